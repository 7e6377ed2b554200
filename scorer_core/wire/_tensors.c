/*
 * scorer_core.wire._tensors: the Open Inference Protocol's requests, read natively where Python
 * cost most.
 *
 * - plain_tensors(raw_inputs, tensor_type): the common inputs of a parsed request, checked in one
 *   pass. A tabular request spells each field as an object of its own (name, datatype, shape,
 *   data), so one row of a model of 30 fields is 30 objects, and checking them one by one in
 *   Python cost about 1 us each: three times the whole H2O parse of the same row, on the event
 *   loop. It is wire.oip's reference implementation, in C: the same checks in the same order,
 *   and None as soon as one input is anything else (nested data, binary data, another datatype
 *   or shape, an element of the wrong type), so that the careful Python path reads every input
 *   and says what is wrong. tests/test_oip_wire.py holds the reference and compares the two.
 * - plain_request(body, tensor_type): a small request of such inputs read from its bytes, with
 *   the same checks, without orjson's dict per input (below).
 * - data_arrays(body, min_bytes, piece_bytes): where a large body's data arrays may be cut, for
 *   wire.oip_pieces (below).
 *
 * Types are checked exactly, as type(x) is T is in Python: a bool is no number here, as it is
 * not in the reference.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "_decimal.h"

static PyObject *s_name, *s_datatype, *s_shape, *s_data, *s_parameters, *s_binary_data_size;

/* The shapes of a single row's column, (1,) and (1, 1), made once: a one-row request of 30 inputs
 * made 30 of each, and every container a request makes brings the next collection nearer, which
 * then walks every request in flight. Tuples of ints never change, so sharing them is safe. The
 * list [1] stands for the shape "[1]" read from a body; it is read, never handed out. */
static PyObject *one_row, *one_row_one_column, *one_row_list;

/* The element types a plain input's datatype takes (the reference's _PLAIN). */
enum kind { NOT_PLAIN, NUMBERS, INTEGERS, TEXTS, BOOLEANS };

static enum kind kind_of(PyObject *datatype) {
    if (!PyUnicode_CheckExact(datatype)) return NOT_PLAIN;
    if (PyUnicode_CompareWithASCIIString(datatype, "FP64") == 0) return NUMBERS;
    if (PyUnicode_CompareWithASCIIString(datatype, "FP32") == 0) return NUMBERS;
    if (PyUnicode_CompareWithASCIIString(datatype, "INT64") == 0) return INTEGERS;
    if (PyUnicode_CompareWithASCIIString(datatype, "BYTES") == 0) return TEXTS;
    if (PyUnicode_CompareWithASCIIString(datatype, "BOOL") == 0) return BOOLEANS;
    return NOT_PLAIN;
}

/* dict.get as a new reference, NULL when absent (*failed set on an error). A new reference, not
 * a borrowed one: a later lookup may run a key's __eq__ (a key of the same hash), which could drop
 * what an earlier one returned. orjson's dicts never do; a caller's own objects might. */
static PyObject *get(PyObject *dict, PyObject *key, int *failed) {
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL) {
        if (PyErr_Occurred()) *failed = 1;
        return NULL;
    }
    return Py_NewRef(value);
}

/* 1: every element fits the kind (and any None noted in *missing); 0: one does not; -1: error. */
static int elements_fit(PyObject *data, enum kind kind, int *missing) {
    Py_ssize_t count = PyList_GET_SIZE(data);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyList_GET_ITEM(data, i);
        if (value == Py_None) {
            *missing = 1;
            continue;
        }
        switch (kind) {
        case NUMBERS:
            if (!PyFloat_CheckExact(value) && !PyLong_CheckExact(value)) return 0;
            break;
        case INTEGERS: {
            int overflow = 0;
            long long number;
            if (!PyLong_CheckExact(value)) return 0;
            number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (number == -1 && PyErr_Occurred()) return -1;
            if (overflow) return 0; /* beyond INT64: the careful path names it */
            break;
        }
        case TEXTS:
            if (!PyUnicode_CheckExact(value)) return 0;
            break;
        case BOOLEANS:
            if (!PyBool_Check(value)) return 0;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* data with each None as NaN (a new list); None (a new reference) if data changed meanwhile. */
static PyObject *with_nan(PyObject *data) {
    Py_ssize_t count = PyList_GET_SIZE(data);
    PyObject *copy = PyList_New(count);
    if (copy == NULL) return NULL;
    if (PyList_GET_SIZE(data) != count) { /* a collection the allocation ran changed it */
        Py_DECREF(copy);
        Py_RETURN_NONE;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyList_GET_ITEM(data, i);
        if (value == Py_None) {
            value = PyFloat_FromDouble(Py_NAN);
            if (value == NULL) {
                Py_DECREF(copy);
                return NULL;
            }
        } else {
            Py_INCREF(value);
        }
        PyList_SET_ITEM(copy, i, value);
    }
    return copy;
}

/* The tensor of one input from its members (NULL: absent), as plain_tensor reads them; Py_None
 * (a new reference) when it is not plain; NULL on an error. Borrows every member: the callers
 * hold references of their own. */
static PyObject *tensor_of_members(PyObject *parameters, PyObject *name, PyObject *datatype, PyObject *shape,
                                   PyObject *data, PyTypeObject *tensor_type) {
    PyObject *count, *values, *shape_tuple, *result;
    enum kind kind;
    Py_ssize_t length, expected;
    int missing = 0, fit;

    if (parameters != NULL && parameters != Py_None) {
        int binary;
        if (!PyDict_CheckExact(parameters)) goto not_plain;
        binary = PyDict_Contains(parameters, s_binary_data_size);
        if (binary < 0) return NULL;
        if (binary) goto not_plain;
    }
    kind = datatype != NULL ? kind_of(datatype) : NOT_PLAIN;
    if (kind == NOT_PLAIN || name == NULL || !PyUnicode_CheckExact(name) || PyUnicode_GET_LENGTH(name) == 0
        || data == NULL || !PyList_CheckExact(data))
        goto not_plain;
    if (shape == NULL || !PyList_CheckExact(shape)) goto not_plain;
    length = PyList_GET_SIZE(shape);
    if (length == 2) {
        PyObject *second = PyList_GET_ITEM(shape, 1);
        int overflow = 0;
        long size;
        if (!PyLong_CheckExact(second)) goto not_plain;
        size = PyLong_AsLongAndOverflow(second, &overflow);
        if (size == -1 && PyErr_Occurred()) return NULL;
        if (overflow || size != 1) goto not_plain;
    } else if (length != 1) {
        goto not_plain;
    }
    count = PyList_GET_ITEM(shape, 0);
    if (!PyLong_CheckExact(count)) goto not_plain;
    expected = PyLong_AsSsize_t(count);
    if (expected == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
        PyErr_Clear(); /* no list is that long */
        goto not_plain;
    }
    if (PyList_GET_SIZE(data) != expected) goto not_plain;
    if (expected > 0 && PyList_CheckExact(PyList_GET_ITEM(data, 0))) goto not_plain;
    fit = elements_fit(data, kind, &missing);
    if (fit < 0) return NULL;
    if (fit == 0) goto not_plain;
    if (missing && kind == NUMBERS) {
        values = with_nan(data);
        if (values == NULL || values == Py_None) return values;
    } else {
        values = Py_NewRef(data);
    }
    if (expected == 1)
        shape_tuple = Py_NewRef(length == 1 ? one_row : one_row_one_column);
    else
        shape_tuple = PyList_AsTuple(shape);
    if (shape_tuple == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    /* What tuple.__new__(tensor_type, fields) makes (a NamedTuple's _make), allocated as it
     * allocates it (tp_alloc of the subclass) and filled in place. */
    result = tensor_type->tp_alloc(tensor_type, 4);
    if (result == NULL) {
        Py_DECREF(shape_tuple);
        Py_DECREF(values);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, Py_NewRef(name));
    PyTuple_SET_ITEM(result, 1, Py_NewRef(datatype));
    PyTuple_SET_ITEM(result, 2, shape_tuple);
    PyTuple_SET_ITEM(result, 3, values);
    return result;
not_plain:
    Py_RETURN_NONE;
}

/* The tensor of one input; Py_None (a new reference) when it is not plain; NULL on an error. */
static PyObject *plain_tensor(PyObject *raw, PyTypeObject *tensor_type) {
    PyObject *parameters = NULL, *name = NULL, *datatype = NULL, *shape = NULL, *data = NULL, *result = NULL;
    int failed = 0;

    if (!PyDict_CheckExact(raw)) Py_RETURN_NONE;
    parameters = get(raw, s_parameters, &failed);
    if (!failed) name = get(raw, s_name, &failed);
    if (!failed) datatype = get(raw, s_datatype, &failed);
    if (!failed) shape = get(raw, s_shape, &failed);
    if (!failed) data = get(raw, s_data, &failed);
    if (!failed) result = tensor_of_members(parameters, name, datatype, shape, data, tensor_type);
    Py_XDECREF(parameters);
    Py_XDECREF(name);
    Py_XDECREF(datatype);
    Py_XDECREF(shape);
    Py_XDECREF(data);
    return result;
}

static PyObject *plain_tensors(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *raw_inputs, *tensors;
    PyTypeObject *tensor_type;
    Py_ssize_t count;

    (void)module;
    if (nargs != 2 || !PyList_Check(args[0]) || !PyType_Check(args[1])
        || !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "plain_tensors(raw_inputs: list, tensor_type: a tuple subclass)");
        return NULL;
    }
    raw_inputs = args[0];
    tensor_type = (PyTypeObject *)args[1];
    count = PyList_GET_SIZE(raw_inputs);
    tensors = PyList_New(count);
    if (tensors == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *raw, *tensor;
        if (i >= PyList_GET_SIZE(raw_inputs)) { /* a key's __eq__ shortened the list */
            Py_DECREF(tensors);
            Py_RETURN_NONE;
        }
        raw = Py_NewRef(PyList_GET_ITEM(raw_inputs, i));
        tensor = plain_tensor(raw, tensor_type);
        Py_DECREF(raw);
        if (tensor == NULL) {
            Py_DECREF(tensors);
            return NULL;
        }
        if (tensor == Py_None) {
            Py_DECREF(tensors);
            return tensor; /* the reference to None */
        }
        PyList_SET_ITEM(tensors, i, tensor);
    }
    return tensors;
}

/* ---------------------------------------------------------------------------------------------
 * data_arrays(body, min_bytes, piece_bytes): where a large body's "data" arrays lie, and where
 * each may be cut between its elements, found in one pass with the GIL released.
 *
 * Why: one orjson.loads over a body of tens of megabytes holds the GIL for hundreds of
 * milliseconds, and no health probe is answered meanwhile. wire.oip_pieces parses the rest of the
 * body and each array's pieces in calls of milliseconds, and proves with those parses that the
 * cuts were right; this only finds them. It is a lexer, not a validator: strings (with their
 * escapes) and nesting are followed, nothing else is checked. A body it cannot follow (nesting
 * deeper than MAX_DEPTH, a string or an array left open, more closes than opens) answers None,
 * and the body is parsed whole.
 *
 * An array is reported when it is the value of a member spelt exactly "data" (no escapes), is not
 * inside another reported array, and spans at least min_bytes. Its cuts are the offsets of commas
 * directly inside it, the first at least piece_bytes after the array's start and each next at
 * least piece_bytes after the one before.
 * ------------------------------------------------------------------------------------------- */

#define MAX_DEPTH 64

typedef struct {
    Py_ssize_t start, end;      /* the array's '[' and one past its ']' */
    Py_ssize_t first_cut, cuts; /* its cuts: cut_offsets[first_cut .. first_cut + cuts) */
} found_array;

typedef struct {
    found_array *arrays;
    Py_ssize_t arrays_used, arrays_size;
    Py_ssize_t *cut_offsets;
    Py_ssize_t cuts_used, cuts_size;
} findings;

static int grow(void **items, Py_ssize_t *size, Py_ssize_t used, size_t item_size) {
    if (used < *size) return 1;
    Py_ssize_t larger = *size ? *size * 2 : 16;
    void *moved = PyMem_RawRealloc(*items, (size_t)larger * item_size);
    if (moved == NULL) return 0;
    *items = moved;
    *size = larger;
    return 1;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* 1: scanned; 0: the body cannot be followed (None); -1: out of memory. Runs without the GIL. */
static int scan_arrays(const char *body, Py_ssize_t size, Py_ssize_t min_bytes, Py_ssize_t piece_bytes,
                       findings *out) {
    Py_ssize_t depth = 0, array_depth = -1, array_start = 0, piece_start = 0, first_cut = 0;
    int data_key = 0; /* the last token was the key "data" and its colon */
    for (Py_ssize_t i = 0; i < size; i++) {
        char c = body[i];
        if (is_blank(c)) continue;
        if (c == '"') {
            Py_ssize_t start = ++i;
            while (i < size && body[i] != '"') i += body[i] == '\\' ? 2 : 1;
            if (i >= size) return 0;
            int is_data = i - start == 4 && memcmp(body + start, "data", 4) == 0;
            Py_ssize_t next = i + 1;
            while (next < size && is_blank(body[next])) next++;
            if (next < size && body[next] == ':') {
                data_key = is_data;
                i = next;
                continue;
            }
            data_key = 0;
            continue;
        }
        if (c == '[' || c == '{') {
            if (++depth > MAX_DEPTH) return 0;
            if (c == '[' && data_key && array_depth < 0) {
                array_depth = depth;
                array_start = piece_start = i;
                first_cut = out->cuts_used;
            }
        } else if (c == ']' || c == '}') {
            if (array_depth == depth && c == ']') {
                if (i + 1 - array_start >= min_bytes) {
                    if (!grow((void **)&out->arrays, &out->arrays_size, out->arrays_used, sizeof(found_array)))
                        return -1;
                    out->arrays[out->arrays_used++] =
                        (found_array){array_start, i + 1, first_cut, out->cuts_used - first_cut};
                } else {
                    out->cuts_used = first_cut; /* too small: parsed with the rest */
                }
                array_depth = -1;
            }
            if (--depth < 0) return 0;
        } else if (c == ',' && depth == array_depth && i - piece_start >= piece_bytes) {
            if (!grow((void **)&out->cut_offsets, &out->cuts_size, out->cuts_used, sizeof(Py_ssize_t))) return -1;
            out->cut_offsets[out->cuts_used++] = i;
            piece_start = i;
        }
        data_key = 0;
    }
    return depth == 0 && array_depth < 0;
}

static PyObject *data_arrays(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    findings found = {NULL, 0, 0, NULL, 0, 0};
    Py_ssize_t min_bytes, piece_bytes;
    PyObject *body, *result = NULL;
    int scanned;

    (void)module;
    if (nargs != 3 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "data_arrays(body: bytes, min_bytes: int, piece_bytes: int)");
        return NULL;
    }
    body = args[0];
    min_bytes = PyLong_AsSsize_t(args[1]);
    if (min_bytes == -1 && PyErr_Occurred()) return NULL;
    piece_bytes = PyLong_AsSsize_t(args[2]);
    if (piece_bytes == -1 && PyErr_Occurred()) return NULL;
    if (min_bytes < 2 || piece_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "data_arrays: min_bytes must be at least 2, piece_bytes at least 1");
        return NULL;
    }
    Py_INCREF(body); /* bytes never change: it is read without the GIL */
    Py_BEGIN_ALLOW_THREADS
    scanned = scan_arrays(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), min_bytes, piece_bytes, &found);
    Py_END_ALLOW_THREADS
    Py_DECREF(body);
    if (scanned < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (scanned == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyList_New(found.arrays_used);
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < found.arrays_used; i++) {
        found_array array = found.arrays[i];
        PyObject *cuts = PyTuple_New(array.cuts), *item;
        if (cuts == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        for (Py_ssize_t j = 0; j < array.cuts; j++) {
            PyObject *offset = PyLong_FromSsize_t(found.cut_offsets[array.first_cut + j]);
            if (offset == NULL) {
                Py_DECREF(cuts);
                Py_CLEAR(result);
                goto done;
            }
            PyTuple_SET_ITEM(cuts, j, offset);
        }
        item = Py_BuildValue("(nnN)", array.start, array.end, cuts);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    PyMem_RawFree(found.arrays);
    PyMem_RawFree(found.cut_offsets);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * plain_request(body, tensor_type): a small request of plain inputs, read from its bytes.
 *
 * Why: for a single row of a wide model, orjson's dicts (one per input) and then plain_tensors'
 * reading of them were most of the Open Inference Protocol's cost over the H2O path's: 14 us of
 * a request's 20 for 30 inputs. Here the bytes become the tensors in one pass, with no dict per
 * input; each input's members then go through the same checks as plain_tensors'
 * (tensor_of_members).
 *
 * A strict reader of the JSON it takes, and of nothing more: a string with an escape or a control
 * character, an integer of more than 18 digits, a number that is no finite double, a key with an
 * escape, a repeated member of the request or of an input, a nesting deeper than READ_DEPTH, or
 * an input that is not plain: each answers None, and the caller parses the body with orjson, for
 * the same request or its error. So anything it returns is what that parse and plain_tensors
 * would give; tests/test_oip_wire.py compares the two on generated bodies.
 *
 * Returns (id, parameters, tensors, outputs), each member absent as None (the caller reads a
 * dict's .get alike), the tensors a non-empty list.
 * ------------------------------------------------------------------------------------------- */

#define READ_DEPTH 32

typedef struct {
    const char *at, *end;
} reader;

/* 1: read (a new reference in *out); 0: not this reader's (None to the caller); -1: error. */
static int read_value(reader *r, PyObject **out, int depth);

static void skip_blanks(reader *r) {
    while (r->at < r->end && is_blank(*r->at)) r->at++;
}

static int take(reader *r, char c) {
    skip_blanks(r);
    if (r->at < r->end && *r->at == c) {
        r->at++;
        return 1;
    }
    return 0;
}

/* A string's raw bytes, its quotes read: 1, or 0 when it has an escape or a control character. */
static int read_raw_string(reader *r, const char **text, Py_ssize_t *length) {
    const char *start;
    if (r->at >= r->end || *r->at != '"') return 0;
    start = ++r->at;
    while (r->at < r->end && *r->at != '"') {
        unsigned char c = (unsigned char)*r->at;
        if (c == '\\' || c < 0x20) return 0;
        r->at++;
    }
    if (r->at >= r->end) return 0;
    *text = start;
    *length = r->at - start;
    r->at++;
    return 1;
}

static int read_string(reader *r, PyObject **out) {
    const char *text;
    Py_ssize_t length;
    if (!read_raw_string(r, &text, &length)) return 0;
    *out = PyUnicode_DecodeUTF8(text, length, "strict");
    if (*out == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return -1;
        PyErr_Clear(); /* not UTF-8: orjson's error says so */
        return 0;
    }
    return 1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A JSON number: an int when it has no fraction or exponent (as orjson reads it), else a float. */
static int read_number(reader *r, PyObject **out) {
    const char *start = r->at, *digits;
    int integral = 1;
    char text[64];
    double value;
    char *stop;

    if (r->at < r->end && *r->at == '-') r->at++;
    digits = r->at;
    if (r->at >= r->end || !is_digit(*r->at)) return 0;
    if (*r->at == '0') {
        r->at++;
    } else {
        while (r->at < r->end && is_digit(*r->at)) r->at++;
    }
    if (r->at < r->end && *r->at == '.') {
        integral = 0;
        r->at++;
        if (r->at >= r->end || !is_digit(*r->at)) return 0;
        while (r->at < r->end && is_digit(*r->at)) r->at++;
    }
    if (r->at < r->end && (*r->at == 'e' || *r->at == 'E')) {
        integral = 0;
        r->at++;
        if (r->at < r->end && (*r->at == '+' || *r->at == '-')) r->at++;
        if (r->at >= r->end || !is_digit(*r->at)) return 0;
        while (r->at < r->end && is_digit(*r->at)) r->at++;
    }
    if (integral) {
        long long number = 0;
        if (r->at - digits > 18) return 0; /* orjson's range is wider: it says what it reads */
        for (const char *c = digits; c < r->at; c++) number = number * 10 + (*c - '0');
        *out = PyLong_FromLongLong(*start == '-' ? -number : number);
        return *out == NULL ? -1 : 1;
    }
    if (decimal_to_double(start, r->at, &value)) {
        *out = PyFloat_FromDouble(value);
        return *out == NULL ? -1 : 1;
    }
    if (r->at - start >= (Py_ssize_t)sizeof(text)) return 0;
    memcpy(text, start, (size_t)(r->at - start));
    text[r->at - start] = '\0';
    value = PyOS_string_to_double(text, &stop, NULL); /* correctly rounded, locale-free */
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != text + (r->at - start) || !isfinite(value)) return 0;
    *out = PyFloat_FromDouble(value);
    return *out == NULL ? -1 : 1;
}

static int read_literal(reader *r, const char *word, PyObject *value, PyObject **out) {
    size_t length = strlen(word);
    if ((size_t)(r->end - r->at) < length || memcmp(r->at, word, length) != 0) return 0;
    r->at += length;
    *out = Py_NewRef(value);
    return 1;
}

static int read_array(reader *r, PyObject **out, int depth) {
    PyObject *list = PyList_New(0), *item;
    int read;
    if (list == NULL) return -1;
    r->at++; /* the [ */
    if (take(r, ']')) {
        *out = list;
        return 1;
    }
    do {
        skip_blanks(r);
        read = read_value(r, &item, depth + 1);
        if (read == 1) {
            read = PyList_Append(list, item) == 0 ? 1 : -1;
            Py_DECREF(item);
        }
        if (read != 1) {
            Py_DECREF(list);
            return read;
        }
    } while (take(r, ','));
    if (!take(r, ']')) {
        Py_DECREF(list);
        return 0;
    }
    *out = list;
    return 1;
}

static int read_object(reader *r, PyObject **out, int depth) {
    PyObject *dict = PyDict_New(), *key, *item;
    int read;
    if (dict == NULL) return -1;
    r->at++; /* the { */
    if (take(r, '}')) {
        *out = dict;
        return 1;
    }
    do {
        skip_blanks(r);
        read = read_string(r, &key);
        if (read == 1 && !take(r, ':')) {
            Py_DECREF(key);
            read = 0;
        }
        if (read == 1) {
            skip_blanks(r);
            read = read_value(r, &item, depth + 1);
            if (read == 1) {
                read = PyDict_SetItem(dict, key, item) == 0 ? 1 : -1; /* a repeated key: the last, as orjson */
                Py_DECREF(item);
            }
            Py_DECREF(key);
        }
        if (read != 1) {
            Py_DECREF(dict);
            return read;
        }
    } while (take(r, ','));
    if (!take(r, '}')) {
        Py_DECREF(dict);
        return 0;
    }
    *out = dict;
    return 1;
}

static int read_value(reader *r, PyObject **out, int depth) {
    if (r->at >= r->end || depth > READ_DEPTH) return 0;
    switch (*r->at) {
    case '"':
        return read_string(r, out);
    case '[':
        return read_array(r, out, depth);
    case '{':
        return read_object(r, out, depth);
    case 't':
        return read_literal(r, "true", Py_True, out);
    case 'f':
        return read_literal(r, "false", Py_False, out);
    case 'n':
        return read_literal(r, "null", Py_None, out);
    default:
        return read_number(r, out);
    }
}

/* A member's key, by its raw bytes: 1, or 0 when it has an escape (orjson would unescape it) or
 * a byte past ASCII (its UTF-8 unchecked, where orjson refuses a body that is not UTF-8). */
static int read_key(reader *r, const char **key, Py_ssize_t *length) {
    skip_blanks(r);
    if (!read_raw_string(r, key, length)) return 0;
    for (Py_ssize_t i = 0; i < *length; i++)
        if ((unsigned char)(*key)[i] >= 0x80) return 0;
    return take(r, ':');
}

typedef struct {
    const char *text;
    Py_ssize_t length;
} key_name;

#define KEY(text) {text, sizeof(text) - 1}

static int is_key(const char *key, Py_ssize_t length, key_name name) {
    return length == name.length && memcmp(key, name.text, (size_t)length) == 0;
}

/* One member's value into *slot, refused (0) when the member came before. */
static int read_member(reader *r, PyObject **slot, int depth) {
    PyObject *value;
    int read;
    if (*slot != NULL) return 0;
    skip_blanks(r);
    read = read_value(r, &value, depth);
    if (read == 1) *slot = value;
    return read;
}

/* One input object, as a tensor (1), or 0 when it is not plain or not this reader's. */
static int read_tensor(reader *r, PyTypeObject *tensor_type, PyObject **out) {
    PyObject *members[5] = {NULL, NULL, NULL, NULL, NULL}; /* parameters, name, datatype, shape, data */
    static const key_name names[5] = {KEY("parameters"), KEY("name"), KEY("datatype"), KEY("shape"), KEY("data")};
    PyObject *ignored = NULL;
    int read = 1;

    skip_blanks(r);
    if (!take(r, '{')) return 0;
    if (!take(r, '}')) {
        do {
            const char *key;
            Py_ssize_t length;
            int member = -1;
            if (!read_key(r, &key, &length)) {
                read = 0;
                break;
            }
            for (int i = 0; i < 5; i++)
                if (is_key(key, length, names[i])) member = i;
            skip_blanks(r);
            if (member == 3 && members[3] == NULL && r->end - r->at >= 3 && memcmp(r->at, "[1]", 3) == 0) {
                members[3] = Py_NewRef(one_row_list); /* the common shape, without a list of its own */
                r->at += 3;
            } else if (member >= 0) {
                read = read_member(r, &members[member], 2);
            } else { /* a member the request does not read: read, so that it is valid JSON */
                read = read_value(r, &ignored, 2);
                Py_CLEAR(ignored);
            }
        } while (read == 1 && take(r, ','));
        if (read == 1 && !take(r, '}')) read = 0;
    }
    if (read == 1) {
        *out = tensor_of_members(members[0], members[1], members[2], members[3], members[4], tensor_type);
        if (*out == NULL) {
            read = -1;
        } else if (*out == Py_None) {
            Py_CLEAR(*out);
            read = 0;
        }
    }
    for (int i = 0; i < 5; i++) Py_XDECREF(members[i]);
    return read;
}

static int read_tensors(reader *r, PyTypeObject *tensor_type, PyObject **out) {
    PyObject *tensors, *tensor;
    int read;
    skip_blanks(r);
    if (!take(r, '[')) return 0;
    tensors = PyList_New(0);
    if (tensors == NULL) return -1;
    do {
        read = read_tensor(r, tensor_type, &tensor);
        if (read == 1) {
            read = PyList_Append(tensors, tensor) == 0 ? 1 : -1;
            Py_DECREF(tensor);
        }
    } while (read == 1 && take(r, ','));
    if (read == 1 && !take(r, ']')) read = 0; /* also an empty list: its error is the caller's */
    if (read != 1) {
        Py_DECREF(tensors);
        return read;
    }
    *out = tensors;
    return 1;
}

static PyObject *plain_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *members[4] = {NULL, NULL, NULL, NULL}; /* id, parameters, inputs, outputs */
    static const key_name names[4] = {KEY("id"), KEY("parameters"), KEY("inputs"), KEY("outputs")};
    PyObject *ignored = NULL, *result = NULL;
    PyTypeObject *tensor_type;
    reader r;
    int read = 1;

    (void)module;
    if (nargs != 2 || !PyBytes_CheckExact(args[0]) || !PyType_Check(args[1])
        || !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "plain_request(body: bytes, tensor_type: a tuple subclass)");
        return NULL;
    }
    tensor_type = (PyTypeObject *)args[1];
    r.at = PyBytes_AS_STRING(args[0]);
    r.end = r.at + PyBytes_GET_SIZE(args[0]);
    if (!take(&r, '{') || take(&r, '}')) read = 0;
    while (read == 1) {
        const char *key;
        Py_ssize_t length;
        int member = -1;
        if (!read_key(&r, &key, &length)) {
            read = 0;
            break;
        }
        for (int i = 0; i < 4; i++)
            if (is_key(key, length, names[i])) member = i;
        if (member == 2) {
            read = members[2] == NULL ? read_tensors(&r, tensor_type, &members[2]) : 0;
        } else if (member >= 0) {
            read = read_member(&r, &members[member], 1);
        } else {
            skip_blanks(&r);
            read = read_value(&r, &ignored, 1);
            Py_CLEAR(ignored);
        }
        if (read != 1 || !take(&r, ',')) break;
    }
    if (read == 1 && !take(&r, '}')) read = 0;
    skip_blanks(&r);
    if (read == 1 && (r.at != r.end || members[2] == NULL || PyList_GET_SIZE(members[2]) == 0)) read = 0;
    if (read == 1) {
        for (int i = 0; i < 4; i++)
            if (members[i] == NULL) members[i] = Py_NewRef(Py_None);
        result = PyTuple_Pack(4, members[0], members[1], members[2], members[3]);
    } else if (read == 0) {
        result = Py_NewRef(Py_None);
    }
    for (int i = 0; i < 4; i++) Py_XDECREF(members[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"plain_tensors", (PyCFunction)(void (*)(void))plain_tensors, METH_FASTCALL,
     "plain_tensors(raw_inputs, tensor_type) -> list of tensor_type, or None.\n\n"
     "Each input of the common request (one column of JSON elements, shape [N] or [N, 1], of\n"
     "FP64, FP32, INT64, BYTES or BOOL, no binary data) as tensor_type(name, datatype,\n"
     "tuple(shape), data), None in a number input's data as NaN; None when any input is not so."},
    {"plain_request", (PyCFunction)(void (*)(void))plain_request, METH_FASTCALL,
     "plain_request(body, tensor_type) -> (id, parameters, tensors, outputs), or None.\n\n"
     "A request of plain inputs (as plain_tensors takes them) read from its JSON bytes, each\n"
     "absent member None; None for anything else, which orjson then parses."},
    {"data_arrays", (PyCFunction)(void (*)(void))data_arrays, METH_FASTCALL,
     "data_arrays(body, min_bytes, piece_bytes) -> list of (start, end, cuts), or None.\n\n"
     "The \"data\" arrays of at least min_bytes in a JSON body, each with the offsets of commas\n"
     "directly inside it, about piece_bytes apart; None when the body cannot be followed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_tensors",
    "The Open Inference Protocol's requests, read natively where Python cost most (see _tensors.c).", -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tensors(void) {
    if (s_name == NULL) {
        s_name = PyUnicode_InternFromString("name");
        s_datatype = PyUnicode_InternFromString("datatype");
        s_shape = PyUnicode_InternFromString("shape");
        s_data = PyUnicode_InternFromString("data");
        s_parameters = PyUnicode_InternFromString("parameters");
        s_binary_data_size = PyUnicode_InternFromString("binary_data_size");
        if (s_name == NULL || s_datatype == NULL || s_shape == NULL || s_data == NULL || s_parameters == NULL
            || s_binary_data_size == NULL)
            return NULL;
        one_row = Py_BuildValue("(n)", (Py_ssize_t)1);
        one_row_one_column = Py_BuildValue("(nn)", (Py_ssize_t)1, (Py_ssize_t)1);
        one_row_list = Py_BuildValue("[n]", (Py_ssize_t)1);
        if (one_row == NULL || one_row_one_column == NULL || one_row_list == NULL) return NULL;
    }
    return PyModule_Create(&module_definition);
}
