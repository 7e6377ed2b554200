/*
 * scorer_core.wire._rows: a rows array of quoted JSON numbers, decoded straight into doubles.
 *
 * Why: H2O's contract sends every cell as a string, so a 10,000-row request of 30 numbers was
 * 300,000 Python objects made and parsed one by one, most of a large request's time. Here the
 * bytes are read once, each cell's number converted where it lies, into one buffer of doubles,
 * with the GIL released, so that the event loop and other requests run meanwhile.
 *
 * It accepts exactly one shape, and answers None for anything else, so that the Python paths
 * decide (and give the general path's errors): an array of one or more rows, each an array of
 * the same number (one or more) of cells, each cell a JSON string holding exactly one JSON
 * number, with no blanks inside the quotes; blanks (space, tab, CR, LF) between tokens. It
 * reads from an offset in the body to the array's closing bracket and says where that was, so
 * the body is never scanned for the array's end.
 *
 * Values: the number text is converted by strtod in the "C" locale, which glibc rounds
 * correctly, as Python's float() does; so every cell gets the value the general path gives it.
 * Where strtod_l is not available, Python's own converter runs, with the GIL held.
 */

#define PY_SSIZE_T_CLEAN
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__)
#include <locale.h>
#define SCORER_STRTOD_L 1
static locale_t c_locale = (locale_t)0;
#endif

#define IS_BLANK(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

enum outcome { DECODED = 0, NOT_THIS_SHAPE = -1, NO_MEMORY = -2 };

/* Exact powers of ten: every one up to 1e22 is a double. */
static const double POWERS_OF_TEN[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * Clinger's fast path: when the digits, read as an integer, are below 2**53 and the power of ten
 * is at most 22, both are exact doubles and one multiplication or division rounds correctly, so
 * the result is strtod's. Returns 0 when the number is not of that kind (strtod then runs).
 * ``text`` is known to match the JSON number grammar.
 */
static int fast_double(const char *p, const char *end, double *value) {
    int negative = 0, digits = 0;
    long exponent = 0, written = 0;
    unsigned long long mantissa = 0;
    if (*p == '-') {
        negative = 1;
        p++;
    }
    for (; p < end && IS_DIGIT(*p); p++) {
        if (mantissa == 0 && *p == '0') continue; /* a leading zero is no significant digit */
        if (++digits > 15) return 0;
        mantissa = mantissa * 10 + (unsigned long long)(*p - '0');
    }
    if (p < end && *p == '.') {
        for (p++; p < end && IS_DIGIT(*p); p++) {
            if (mantissa == 0 && *p == '0') {
                exponent--;
                continue;
            }
            if (++digits > 15) return 0;
            mantissa = mantissa * 10 + (unsigned long long)(*p - '0');
            exponent--;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int minus = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) minus = *p++ == '-';
        for (; p < end && IS_DIGIT(*p); p++) {
            written = written * 10 + (*p - '0');
            if (written > 400) return 0;
        }
        exponent += minus ? -written : written;
    }
    if (mantissa == 0) {
        *value = negative ? -0.0 : 0.0;
        return 1;
    }
    if (exponent < -22 || exponent > 22) return 0;
    *value = exponent < 0 ? (double)mantissa / POWERS_OF_TEN[-exponent]
                          : (double)mantissa * POWERS_OF_TEN[exponent];
    if (negative) *value = -*value;
    return 1;
}

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

/* The grammar above, into *out (malloc'd; the caller frees it). */
static enum outcome decode(const char *p, Py_ssize_t size, double **out, Py_ssize_t *rows_out,
                           Py_ssize_t *width_out, Py_ssize_t *consumed) {
    const char *start = p, *end = p + size;
    size_t capacity = 4096, count = 0;
    double *values = malloc(capacity * sizeof(double));
    Py_ssize_t rows = 0, width = -1;
    int failed = 0;
    enum after next;

    if (values == NULL) {
        return NO_MEMORY;
    }
#define SKIP_BLANKS() while (p < end && IS_BLANK(*p)) p++
#define REFUSE() do { free(values); return NOT_THIS_SHAPE; } while (0)
    SKIP_BLANKS();
    if (p >= end || *p != '[') REFUSE();
    p++;
    SKIP_BLANKS();
    for (;;) { /* one row */
        Py_ssize_t cells = 0;
        if (p >= end || *p != '[') REFUSE();
        p++;
        SKIP_BLANKS();
        for (;;) { /* one cell */
            const char *number;
            if (p >= end || *p != '"') REFUSE();
            number = ++p;
            if (p < end && *p == '-') p++;
            if (p >= end) REFUSE();
            if (*p == '0') {
                p++;
            } else if (*p >= '1' && *p <= '9') {
                while (p < end && IS_DIGIT(*p)) p++;
            } else {
                REFUSE();
            }
            if (p < end && *p == '.') {
                p++;
                if (p >= end || !IS_DIGIT(*p)) REFUSE();
                while (p < end && IS_DIGIT(*p)) p++;
            }
            if (p < end && (*p == 'e' || *p == 'E')) {
                p++;
                if (p < end && (*p == '+' || *p == '-')) p++;
                if (p >= end || !IS_DIGIT(*p)) REFUSE();
                while (p < end && IS_DIGIT(*p)) p++;
            }
            if (p >= end || *p != '"') REFUSE();
            if (count == capacity) {
                double *grown = realloc(values, 2 * capacity * sizeof(double));
                if (grown == NULL) {
                    free(values);
                    return NO_MEMORY;
                }
                values = grown;
                capacity *= 2;
            }
            if (!fast_double(number, p, &values[count])) {
                values[count] = to_double(number, (size_t)(p - number), &failed);
            }
            count++;
            if (failed) {
                free(values);
                return NO_MEMORY;
            }
            p++; /* the closing quote */
            cells++;
            next = after_item(&p, end);
            if (next == NO_ITEM) REFUSE();
            if (next == CLOSED) break;
        }
        if (width < 0) {
            width = cells;
        } else if (cells != width) {
            REFUSE(); /* ragged: the general path names the row */
        }
        rows++;
        next = after_item(&p, end);
        if (next == NO_ITEM) REFUSE();
        if (next == CLOSED) break;
    }
#undef SKIP_BLANKS
#undef REFUSE
    *out = values;
    *rows_out = rows;
    *width_out = width;
    *consumed = p - start;
    return DECODED;
}

static PyObject *quoted_numbers(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    double *values = NULL;
    Py_ssize_t rows = 0, width = 0, start = 0, consumed = 0;
    enum outcome outcome;
    PyObject *data;

    (void)module;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "quoted_numbers(data, start=0)");
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
    outcome = decode((const char *)view.buf + start, view.len - start, &values, &rows, &width, &consumed);
    Py_END_ALLOW_THREADS
#else
    outcome = decode((const char *)view.buf + start, view.len - start, &values, &rows, &width, &consumed);
#endif
    PyBuffer_Release(&view);
    if (outcome == NO_MEMORY) {
        return PyErr_NoMemory();
    }
    if (outcome == NOT_THIS_SHAPE) {
        Py_RETURN_NONE;
    }
    data = PyBytes_FromStringAndSize((const char *)values, (Py_ssize_t)(rows * width * sizeof(double)));
    free(values);
    if (data == NULL) {
        return NULL;
    }
    return Py_BuildValue("(Nnnn)", data, rows, width, start + consumed);
}

static PyMethodDef methods[] = {
    {"quoted_numbers", (PyCFunction)(void (*)(void))quoted_numbers, METH_FASTCALL,
     "quoted_numbers(data, start=0) -> (float64 bytes, rows, width, end), or None.\n\n"
     "Decodes the array that starts at data[start] (blanks first allowed), up to its closing\n"
     "bracket, data[end - 1]; None when it is not rows of equal width whose every cell is a\n"
     "string holding exactly one JSON number."},
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
