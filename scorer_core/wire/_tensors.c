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

static PyMethodDef methods[] = {
    {"plain_tensors", (PyCFunction)(void (*)(void))plain_tensors, METH_FASTCALL,
     "plain_tensors(raw_inputs, tensor_type) -> list of tensor_type, or None.\n\n"
     "Each input of the common request (one column of JSON elements, shape [N] or [N, 1], of\n"
     "FP64, FP32, INT64, BYTES or BOOL, no binary data) as tensor_type(name, datatype,\n"
     "tuple(shape), data), None in a number input's data as NaN; None when any input is not so."},
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
