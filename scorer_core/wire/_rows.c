/*
 * scorer_core.wire._rows: a rows array of quoted JSON cells, decoded where it lies.
 *
 * Why: H2O's contract sends every cell as a string, so a 10,000-row request of 14 cells was
 * 140,000 Python objects made, then parsed or copied one by one, most of a large request's time.
 * Here the bytes are read once, with the GIL released, so that the event loop and other requests
 * run meanwhile: each cell that holds exactly one JSON number is converted where it lies into
 * one buffer of doubles, and (quoted_cells) each cell's text is kept as its offset and length,
 * from which distinct_texts makes each distinct text of a column once.
 *
 * It accepts exactly one shape, and answers None for anything else, so that the Python paths
 * decide (and give the general path's errors): an array of one or more rows, each an array of
 * the same number (one or more) of cells, each cell a JSON string with no escape and no control
 * character inside its quotes (for quoted_numbers, exactly one JSON number with no blanks);
 * blanks (space, tab, CR, LF) between tokens. It reads from an offset in the body to the array's
 * closing bracket and says where that was, so the body is never scanned for the array's end.
 *
 * Values: the correctly rounded double, as Python's float() gives it, so every cell gets the value
 * the general path gives it: most numbers are converted by _decimal.h, the rest by strtod in the
 * "C" locale, which glibc rounds correctly (where strtod_l is not available, Python's own
 * converter runs, with the GIL held).
 */

#define PY_SSIZE_T_CLEAN
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_decimal.h"

#if defined(__GLIBC__)
#include <locale.h>
#define SCORER_STRTOD_L 1
static locale_t c_locale = (locale_t)0;
#endif

#define IS_BLANK(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

enum outcome { DECODED = 0, NOT_THIS_SHAPE = -1, NO_MEMORY = -2 };

static double to_double(const char *text, size_t length, int *failed) {
    char small[64];
    char *copy = length < sizeof small ? small : malloc(length + 1);
    double value;
    if (copy == NULL) {
        *failed = 1;
        return 0.0;
    }
    memcpy(copy, text, length);
    copy[length] = '\0';
#ifdef SCORER_STRTOD_L
    value = strtod_l(copy, NULL, c_locale);
#else
    value = PyOS_string_to_double(copy, NULL, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        *failed = 1;
    }
#endif
    if (copy != small) {
        free(copy);
    }
    return value;
}

enum after { ANOTHER, CLOSED, NO_ITEM };

/* After an array's item: past a comma and blanks (ANOTHER item follows), past the array's
 * closing bracket (CLOSED), or NO_ITEM when neither follows. */
static enum after after_item(const char **cursor, const char *end) {
    const char *p = *cursor;
    while (p < end && IS_BLANK(*p)) p++;
    if (p < end && *p == ',') {
        p++;
        while (p < end && IS_BLANK(*p)) p++;
        *cursor = p;
        return ANOTHER;
    }
    if (p < end && *p == ']') {
        *cursor = p + 1;
        return CLOSED;
    }
    return NO_ITEM;
}

/*
 * The end of the JSON number that starts at p (the longest prefix of [p, end) that the grammar
 * allows), or NULL when no number starts there.
 */
static const char *number_end(const char *p, const char *end) {
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && IS_DIGIT(*p)) p++;
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !IS_DIGIT(*p)) return NULL;
        while (p < end && IS_DIGIT(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !IS_DIGIT(*p)) return NULL;
        while (p < end && IS_DIGIT(*p)) p++;
    }
    return p;
}

/*
 * What the decoder writes: one double per cell, row after row (NaN for a cell that is not
 * exactly one JSON number), and with ``spans`` each cell's text as two int64s, its offset in
 * the data and its length. Without ``spans`` (numbers only) a cell that is not a number refuses
 * the whole array.
 */
typedef struct {
    double *values;
    int64_t *spans;
    size_t capacity, count;
    int non_ascii; /* a byte above 127 in some cell: the caller checks the text is UTF-8 */
} Cells;

static void cells_free(Cells *cells) {
    free(cells->values);
    free(cells->spans);
    cells->values = NULL;
    cells->spans = NULL;
}

static int cells_grow(Cells *cells, int spans) {
    size_t capacity = cells->capacity ? 2 * cells->capacity : 4096;
    double *values = realloc(cells->values, capacity * sizeof(double));
    if (values == NULL) return -1;
    cells->values = values;
    if (spans) {
        int64_t *grown = realloc(cells->spans, 2 * capacity * sizeof(int64_t));
        if (grown == NULL) return -1;
        cells->spans = grown;
    }
    cells->capacity = capacity;
    return 0;
}

/*
 * The grammar at the top of this file, from p to the array's closing bracket, into *cells
 * (whose buffers the caller frees, whatever the outcome). ``base`` is where offsets count from.
 * Inside a cell's quotes, a backslash (an escape) or a control character refuses the array:
 * the general path decodes escapes and rejects control characters.
 */
static enum outcome decode(const char *base, const char *p, Py_ssize_t size, int spans, Cells *cells,
                           Py_ssize_t *rows_out, Py_ssize_t *width_out, Py_ssize_t *consumed) {
    const char *start = p, *end = p + size;
    Py_ssize_t rows = 0, width = -1;
    int failed = 0;
    enum after next;

#define SKIP_BLANKS() while (p < end && IS_BLANK(*p)) p++
#define REFUSE() return NOT_THIS_SHAPE
    SKIP_BLANKS();
    if (p >= end || *p != '[') REFUSE();
    p++;
    SKIP_BLANKS();
    for (;;) { /* one row */
        Py_ssize_t cells_in_row = 0;
        if (p >= end || *p != '[') REFUSE();
        p++;
        SKIP_BLANKS();
        for (;;) { /* one cell */
            const char *text, *number;
            double *value;
            if (p >= end || *p != '"') REFUSE();
            text = ++p;
            if (cells->count == cells->capacity && cells_grow(cells, spans) < 0) return NO_MEMORY;
            value = &cells->values[cells->count];
            /* A number is read where it lies and must end at the closing quote: one pass over
             * its digits (then one to convert them), as most cells of most bodies are numbers. */
            number = number_end(text, end);
            if (number != NULL && number < end && *number == '"') {
                p = number;
                if (!decimal_to_double(text, p, value)) {
                    *value = to_double(text, (size_t)(p - text), &failed);
                    if (failed) return NO_MEMORY;
                }
            } else if (spans) {
                while (p < end && *p != '"') {
                    unsigned char c = (unsigned char)*p;
                    if (c == '\\' || c < 0x20) REFUSE();
                    if (c > 127) cells->non_ascii = 1;
                    p++;
                }
                if (p >= end) REFUSE();
                *value = Py_NAN;
            } else {
                REFUSE();
            }
            if (spans) {
                cells->spans[2 * cells->count] = (int64_t)(text - base);
                cells->spans[2 * cells->count + 1] = (int64_t)(p - text);
            }
            cells->count++;
            p++; /* the closing quote */
            cells_in_row++;
            next = after_item(&p, end);
            if (next == NO_ITEM) REFUSE();
            if (next == CLOSED) break;
        }
        if (width < 0) {
            width = cells_in_row;
        } else if (cells_in_row != width) {
            REFUSE(); /* ragged: the general path names the row */
        }
        rows++;
        next = after_item(&p, end);
        if (next == NO_ITEM) REFUSE();
        if (next == CLOSED) break;
    }
#undef SKIP_BLANKS
#undef REFUSE
    *rows_out = rows;
    *width_out = width;
    *consumed = p - start;
    return DECODED;
}

/* The decoder over data[start:], the buffer's part shared by both entry points. */
static PyObject *decode_from(PyObject *const *args, Py_ssize_t nargs, int spans, const char *usage) {
    Py_buffer view;
    Cells cells = {NULL, NULL, 0, 0, 0};
    Py_ssize_t rows = 0, width = 0, start = 0, consumed = 0;
    enum outcome outcome;
    PyObject *values, *span_bytes, *result;

    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (nargs == 2) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (start < 0 || start > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start is outside the data");
        return NULL;
    }
#ifdef SCORER_STRTOD_L
    Py_BEGIN_ALLOW_THREADS
    outcome = decode((const char *)view.buf, (const char *)view.buf + start, view.len - start, spans, &cells,
                     &rows, &width, &consumed);
    Py_END_ALLOW_THREADS
#else
    outcome = decode((const char *)view.buf, (const char *)view.buf + start, view.len - start, spans, &cells,
                     &rows, &width, &consumed);
#endif
    PyBuffer_Release(&view);
    if (outcome != DECODED) {
        cells_free(&cells);
        if (outcome == NO_MEMORY) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    values = PyBytes_FromStringAndSize((const char *)cells.values, (Py_ssize_t)(cells.count * sizeof(double)));
    if (!spans) {
        cells_free(&cells);
        if (values == NULL) return NULL;
        return Py_BuildValue("(Nnnn)", values, rows, width, start + consumed);
    }
    span_bytes = PyBytes_FromStringAndSize((const char *)cells.spans,
                                           (Py_ssize_t)(2 * cells.count * sizeof(int64_t)));
    cells_free(&cells);
    if (values == NULL || span_bytes == NULL) {
        Py_XDECREF(values);
        Py_XDECREF(span_bytes);
        return NULL;
    }
    result = Py_BuildValue("(NNnnnO)", values, span_bytes, rows, width, start + consumed,
                           cells.non_ascii ? Py_True : Py_False);
    return result;
}

static PyObject *quoted_numbers(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return decode_from(args, nargs, 0, "quoted_numbers(data, start=0)");
}

static PyObject *quoted_cells(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return decode_from(args, nargs, 1, "quoted_cells(data, start=0)");
}

/* FNV-1a, then murmur3's finaliser so that the table's low bits depend on every byte: spans of
 * a categorical column are short, and a few distinct values repeat. No hash without a secret
 * resists texts made to collide, so code_column also bounds its probes (PROBES_PER_ROW). */
static uint64_t span_hash(const char *text, int64_t length) {
    uint64_t hash = 14695981039346656037ULL;
    for (int64_t i = 0; i < length; i++) {
        hash = (hash ^ (unsigned char)text[i]) * 1099511628211ULL;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    hash *= 0xc4ceb34a0e6c2de3ULL;
    hash ^= hash >> 33;
    return hash;
}

/* Probes a column may take, on average a row (plus a constant), before the table gives up and
 * the general path (Python's dict, with its randomised hash) types the request: a body of texts
 * made to collide would otherwise cost time in the square of its rows, in one C call. */
#define PROBES_PER_ROW 16
#define PROBES_ALLOWED_EXTRA 4096

/*
 * One column's cells as codes into its distinct texts, first seen first. ``slots`` is an
 * open-addressing table of indexes into ``firsts`` (the row where each distinct text first
 * appears), -1 where empty. Returns the number of distinct texts, -1 without memory, or -2 when
 * the probes passed their bound (see PROBES_PER_ROW).
 */
static Py_ssize_t code_column(const char *data, const int64_t *spans, Py_ssize_t rows, Py_ssize_t width,
                              Py_ssize_t column, int32_t *codes, Py_ssize_t *firsts) {
    size_t capacity = 64, mask;
    Py_ssize_t distinct = 0;
    uint64_t probes = 0, allowed = (uint64_t)rows * PROBES_PER_ROW + PROBES_ALLOWED_EXTRA;
    Py_ssize_t *slots = malloc(capacity * sizeof(Py_ssize_t));
    if (slots == NULL) return -1;
    memset(slots, 0xff, capacity * sizeof(Py_ssize_t));
    mask = capacity - 1;
    for (Py_ssize_t row = 0; row < rows; row++) {
        const int64_t *span = &spans[2 * (row * width + column)];
        const char *text = data + span[0];
        size_t slot = (size_t)span_hash(text, span[1]) & mask;
        for (;;) {
            Py_ssize_t found = slots[slot];
            if (found < 0) {
                slots[slot] = distinct;
                firsts[distinct] = row;
                codes[row] = (int32_t)distinct++;
                break;
            }
            const int64_t *seen = &spans[2 * (firsts[found] * width + column)];
            if (seen[1] == span[1] && memcmp(data + seen[0], text, (size_t)span[1]) == 0) {
                codes[row] = (int32_t)found;
                break;
            }
            slot = (slot + 1) & mask;
            if (++probes > allowed) {
                free(slots);
                return -2;
            }
        }
        if ((size_t)distinct * 2 > capacity) { /* keep the table at most half full */
            size_t grown_capacity = capacity * 2;
            Py_ssize_t *grown = malloc(grown_capacity * sizeof(Py_ssize_t));
            if (grown == NULL) {
                free(slots);
                return -1;
            }
            memset(grown, 0xff, grown_capacity * sizeof(Py_ssize_t));
            mask = grown_capacity - 1;
            for (Py_ssize_t i = 0; i < distinct; i++) {
                const int64_t *first = &spans[2 * (firsts[i] * width + column)];
                size_t at = (size_t)span_hash(data + first[0], first[1]) & mask;
                while (grown[at] >= 0) {
                    at = (at + 1) & mask;
                    if (++probes > allowed) {
                        free(grown);
                        free(slots);
                        return -2;
                    }
                }
                grown[at] = i;
            }
            free(slots);
            slots = grown;
            capacity = grown_capacity;
        }
    }
    free(slots);
    return distinct;
}

static PyObject *distinct_texts(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer data, spans;
    Py_ssize_t rows, width, column, distinct = 0;
    int32_t *codes = NULL;
    Py_ssize_t *firsts = NULL;
    PyObject *texts = NULL, *code_bytes = NULL;

    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "distinct_texts(data, spans, width, column)");
        return NULL;
    }
    width = PyLong_AsSsize_t(args[2]);
    if (width == -1 && PyErr_Occurred()) return NULL;
    column = PyLong_AsSsize_t(args[3]);
    if (column == -1 && PyErr_Occurred()) return NULL;
    if (width <= 0 || (size_t)width > (size_t)PY_SSIZE_T_MAX / (2 * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "spans do not hold whole rows of this width, or no such column");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &spans, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (width <= 0 || column < 0 || column >= width || spans.len % (Py_ssize_t)(2 * width * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "spans do not hold whole rows of this width, or no such column");
        goto done;
    }
    rows = spans.len / (Py_ssize_t)(2 * width * sizeof(int64_t));
    {
        const int64_t *span = spans.buf;
        for (Py_ssize_t row = 0; row < rows; row++) { /* the column's every span inside the data */
            Py_ssize_t i = row * width + column;
            if (span[2 * i] < 0 || span[2 * i + 1] < 0 || span[2 * i] > (int64_t)data.len ||
                span[2 * i + 1] > (int64_t)data.len - span[2 * i]) {
                PyErr_SetString(PyExc_ValueError, "a span lies outside the data");
                goto done;
            }
        }
    }
    codes = malloc((size_t)(rows ? rows : 1) * sizeof(int32_t));
    firsts = malloc((size_t)(rows ? rows : 1) * sizeof(Py_ssize_t));
    if (codes == NULL || firsts == NULL || rows > INT32_MAX) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    distinct = code_column(data.buf, spans.buf, rows, width, column, codes, firsts);
    Py_END_ALLOW_THREADS
    if (distinct == -2) { /* texts that collide: the general path types them */
        texts = Py_None;
        Py_INCREF(texts);
        goto done;
    }
    if (distinct < 0) {
        PyErr_NoMemory();
        goto done;
    }
    texts = PyList_New(distinct);
    if (texts == NULL) goto done;
    for (Py_ssize_t i = 0; i < distinct; i++) {
        const int64_t *span = &((const int64_t *)spans.buf)[2 * (firsts[i] * width + column)];
        PyObject *text = PyUnicode_DecodeUTF8((const char *)data.buf + span[0], (Py_ssize_t)span[1], "strict");
        if (text == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear(); /* not UTF-8: the general path rejects the body */
                Py_CLEAR(texts);
                texts = Py_None;
                Py_INCREF(texts);
            }
            goto done;
        }
        PyList_SET_ITEM(texts, i, text);
    }
    code_bytes = PyBytes_FromStringAndSize((const char *)codes, (Py_ssize_t)(rows * sizeof(int32_t)));
done:
    free(codes);
    free(firsts);
    PyBuffer_Release(&data);
    PyBuffer_Release(&spans);
    if (texts == Py_None) {
        return texts;
    }
    if (texts == NULL || code_bytes == NULL) {
        Py_XDECREF(texts);
        Py_XDECREF(code_bytes);
        return NULL;
    }
    return Py_BuildValue("(NN)", code_bytes, texts);
}

/* A growing byte buffer for string_rows. */
typedef struct {
    char *data;
    size_t size, capacity;
} Out;

static int out_reserve(Out *out, size_t more) {
    if (out->size + more <= out->capacity) return 0;
    size_t capacity = out->capacity ? out->capacity : 4096;
    while (capacity < out->size + more) capacity *= 2;
    char *grown = realloc(out->data, capacity);
    if (grown == NULL) return -1;
    out->data = grown;
    out->capacity = capacity;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* One str as a JSON string, escaped as orjson escapes it (", \\, and control characters only;
 * other text as UTF-8). Returns 0, -1 without memory, 1 when the str is not UTF-8 (a lone
 * surrogate), which orjson refuses too. */
static int write_string(Out *out, PyObject *text) {
    Py_ssize_t length;
    const char *bytes = PyUnicode_AsUTF8AndSize(text, &length);
    if (bytes == NULL) {
        PyErr_Clear();
        return 1;
    }
    /* at most 6 bytes a byte (\u00XX), plus the quotes */
    if (out_reserve(out, (size_t)length * 6 + 2) < 0) return -1;
    char *w = out->data + out->size;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = HEX[c >> 4];
            *w++ = HEX[c & 15];
        }
    }
    *w++ = '"';
    out->size = (size_t)(w - out->data);
    return 0;
}

static PyObject *string_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *columns;
    Py_ssize_t start, stop, width;
    Out out = {NULL, 0, 0};
    PyObject *result = NULL;

    (void)module;
    if (nargs != 3 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "string_rows(columns: list[list[str]], start, stop)");
        return NULL;
    }
    columns = args[0];
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    stop = PyLong_AsSsize_t(args[2]);
    if (stop == -1 && PyErr_Occurred()) return NULL;
    width = PyList_GET_SIZE(columns);
    if (width == 0 || start < 0 || stop < start) {
        PyErr_SetString(PyExc_ValueError, "string_rows needs one column or more and 0 <= start <= stop");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *column = PyList_GET_ITEM(columns, j);
        if (!PyList_Check(column) || PyList_GET_SIZE(column) < stop) {
            PyErr_SetString(PyExc_ValueError, "every column must be a list of at least stop cells");
            return NULL;
        }
    }
    for (Py_ssize_t row = start; row < stop; row++) {
        if (out_reserve(&out, 2) < 0) goto no_memory;
        if (row > start) out.data[out.size++] = ',';
        out.data[out.size++] = '[';
        for (Py_ssize_t j = 0; j < width; j++) {
            PyObject *cell = PyList_GET_ITEM(PyList_GET_ITEM(columns, j), row);
            int written;
            if (!PyUnicode_CheckExact(cell)) goto not_text;
            if (j > 0) {
                if (out_reserve(&out, 1) < 0) goto no_memory;
                out.data[out.size++] = ',';
            }
            written = write_string(&out, cell);
            if (written < 0) goto no_memory;
            if (written > 0) goto not_text;
        }
        if (out_reserve(&out, 1) < 0) goto no_memory;
        out.data[out.size++] = ']';
    }
    result = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.size);
    free(out.data);
    return result;
not_text:
    free(out.data);
    Py_RETURN_NONE;
no_memory:
    free(out.data);
    return PyErr_NoMemory();
}

static PyMethodDef methods[] = {
    {"quoted_numbers", (PyCFunction)(void (*)(void))quoted_numbers, METH_FASTCALL,
     "quoted_numbers(data, start=0) -> (float64 bytes, rows, width, end), or None.\n\n"
     "Decodes the array that starts at data[start] (blanks first allowed), up to its closing\n"
     "bracket, data[end - 1]; None when it is not rows of equal width whose every cell is a\n"
     "string holding exactly one JSON number."},
    {"quoted_cells", (PyCFunction)(void (*)(void))quoted_cells, METH_FASTCALL,
     "quoted_cells(data, start=0) -> (float64 bytes, spans, rows, width, end, non_ascii), or None.\n\n"
     "As quoted_numbers, but any string without escapes or control characters is a cell: its\n"
     "double is NaN unless it holds exactly one JSON number, and spans (int64 bytes) give each\n"
     "cell's offset in data and length, row after row. non_ascii: some cell has a byte above\n"
     "127, so the caller must check the text is UTF-8."},
    {"distinct_texts", (PyCFunction)(void (*)(void))distinct_texts, METH_FASTCALL,
     "distinct_texts(data, spans, width, column) -> (int32 codes bytes, list of str), or None.\n\n"
     "One column of quoted_cells' spans as codes into its distinct texts (first seen first),\n"
     "each text made once; None when one is not UTF-8."},
    {"string_rows", (PyCFunction)(void (*)(void))string_rows, METH_FASTCALL,
     "string_rows(columns, start, stop) -> bytes, or None.\n\n"
     "Rows start to stop of the columns (lists of str), as JSON arrays joined by commas: what\n"
     "orjson.dumps(rows)[1:-1] gives. None when a cell is not a str, or not UTF-8."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_rows",
    "A rows array of quoted JSON numbers decoded straight into doubles (see _rows.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rows(void) {
#ifdef SCORER_STRTOD_L
    if (c_locale == (locale_t)0) {
        c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (c_locale == (locale_t)0) {
            PyErr_SetString(PyExc_OSError, "cannot create the C locale for number parsing");
            return NULL;
        }
    }
#endif
    return PyModule_Create(&module_definition);
}
