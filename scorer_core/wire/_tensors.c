/*
 * scorer_core.wire._tensors: the Open Inference Protocol's common inputs, checked in one pass.
 *
 * Why: a tabular request spells each field as an object of its own (name, datatype, shape,
 * data), so one row of a model of 30 fields is 30 objects, and checking them one by one in
 * Python cost about 1 us each: three times the whole H2O parse of the same row, on the event
 * loop. Here the objects orjson made are read with the C API, at a tenth of that.
 *
 * plain_tensors(raw_inputs, tensor_type) is wire.oip's reference implementation, in C: the same
 * checks in the same order, and None as soon as one input is anything else (nested data, binary
 * data, another datatype or shape, an element of the wrong type), so that the careful Python
 * path reads every input and says what is wrong. tests/test_oip_wire.py holds the reference and
 * compares the two on generated inputs.
 *
 * Types are checked exactly, as type(x) is T is in Python: a bool is no number here, as it is
 * not in the reference.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static PyObject *s_name, *s_datatype, *s_shape, *s_data, *s_parameters, *s_binary_data_size;

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

/* The tensor of one input; Py_None (a new reference) when it is not plain; NULL on an error. */
static PyObject *plain_tensor(PyObject *raw, PyTypeObject *tensor_type) {
    PyObject *parameters = NULL, *name = NULL, *datatype = NULL, *shape = NULL, *data = NULL;
    PyObject *count, *values, *shape_tuple, *fields, *arguments, *result = NULL;
    enum kind kind;
    Py_ssize_t length, expected;
    int failed = 0, missing = 0, fit;

    if (!PyDict_CheckExact(raw)) Py_RETURN_NONE;
    parameters = get(raw, s_parameters, &failed);
    if (failed) goto done;
    if (parameters != NULL && parameters != Py_None) {
        int binary;
        if (!PyDict_CheckExact(parameters)) goto not_plain;
        binary = PyDict_Contains(parameters, s_binary_data_size);
        if (binary < 0) goto done;
        if (binary) goto not_plain;
    }
    name = get(raw, s_name, &failed);
    if (!failed) datatype = get(raw, s_datatype, &failed);
    if (!failed) shape = get(raw, s_shape, &failed);
    if (!failed) data = get(raw, s_data, &failed);
    if (failed) goto done;
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
        if (size == -1 && PyErr_Occurred()) goto done;
        if (overflow || size != 1) goto not_plain;
    } else if (length != 1) {
        goto not_plain;
    }
    count = PyList_GET_ITEM(shape, 0);
    if (!PyLong_CheckExact(count)) goto not_plain;
    expected = PyLong_AsSsize_t(count);
    if (expected == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) goto done;
        PyErr_Clear(); /* no list is that long */
        goto not_plain;
    }
    if (PyList_GET_SIZE(data) != expected) goto not_plain;
    if (expected > 0 && PyList_CheckExact(PyList_GET_ITEM(data, 0))) goto not_plain;
    fit = elements_fit(data, kind, &missing);
    if (fit < 0) goto done;
    if (fit == 0) goto not_plain;
    if (missing && kind == NUMBERS) {
        values = with_nan(data);
        if (values == NULL) goto done;
        if (values == Py_None) {
            result = values;
            goto done;
        }
    } else {
        values = Py_NewRef(data);
    }
    shape_tuple = PyList_AsTuple(shape);
    if (shape_tuple == NULL) {
        Py_DECREF(values);
        goto done;
    }
    fields = PyTuple_Pack(4, name, datatype, shape_tuple, values);
    Py_DECREF(shape_tuple);
    Py_DECREF(values);
    if (fields == NULL) goto done;
    /* tuple.__new__(tensor_type, fields), as a NamedTuple's _make does. */
    arguments = PyTuple_Pack(1, fields);
    Py_DECREF(fields);
    if (arguments == NULL) goto done;
    result = PyTuple_Type.tp_new(tensor_type, arguments, NULL);
    Py_DECREF(arguments);
    goto done;
not_plain:
    result = Py_NewRef(Py_None);
done:
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
    piece_bytes = PyLong_AsSsize_t(args[2]);
    if ((min_bytes == -1 || piece_bytes == -1) && PyErr_Occurred()) return NULL;
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

static PyMethodDef methods[] = {
    {"plain_tensors", (PyCFunction)(void (*)(void))plain_tensors, METH_FASTCALL,
     "plain_tensors(raw_inputs, tensor_type) -> list of tensor_type, or None.\n\n"
     "Each input of the common request (one column of JSON elements, shape [N] or [N, 1], of\n"
     "FP64, FP32, INT64, BYTES or BOOL, no binary data) as tensor_type(name, datatype,\n"
     "tuple(shape), data), None in a number input's data as NaN; None when any input is not so."},
    {"data_arrays", (PyCFunction)(void (*)(void))data_arrays, METH_FASTCALL,
     "data_arrays(body, min_bytes, piece_bytes) -> list of (start, end, cuts), or None.\n\n"
     "The \"data\" arrays of at least min_bytes in a JSON body, each with the offsets of commas\n"
     "directly inside it, about piece_bytes apart; None when the body cannot be followed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_tensors",
    "The Open Inference Protocol's common inputs, checked in one pass (see _tensors.c).", -1, methods,
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
    }
    return PyModule_Create(&module_definition);
}
