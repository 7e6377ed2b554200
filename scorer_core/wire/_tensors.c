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

/* dict.get: a borrowed reference, NULL when absent (*failed set on an error). */
static PyObject *get(PyObject *dict, PyObject *key, int *failed) {
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL && PyErr_Occurred()) *failed = 1;
    return value;
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

/* data with each None as NaN (a new list). */
static PyObject *with_nan(PyObject *data) {
    Py_ssize_t count = PyList_GET_SIZE(data);
    PyObject *copy = PyList_New(count);
    if (copy == NULL) return NULL;
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
    PyObject *parameters, *name, *datatype, *shape, *data, *count, *values, *shape_tuple, *fields, *tensor;
    enum kind kind;
    Py_ssize_t length, expected;
    int failed = 0, missing = 0, fit;

    if (!PyDict_CheckExact(raw)) Py_RETURN_NONE;
    parameters = get(raw, s_parameters, &failed);
    if (failed) return NULL;
    if (parameters != NULL && parameters != Py_None) {
        int binary;
        if (!PyDict_CheckExact(parameters)) Py_RETURN_NONE;
        binary = PyDict_Contains(parameters, s_binary_data_size);
        if (binary < 0) return NULL;
        if (binary) Py_RETURN_NONE;
    }
    name = get(raw, s_name, &failed);
    datatype = get(raw, s_datatype, &failed);
    shape = get(raw, s_shape, &failed);
    data = get(raw, s_data, &failed);
    if (failed) return NULL;
    kind = datatype != NULL ? kind_of(datatype) : NOT_PLAIN;
    if (kind == NOT_PLAIN || name == NULL || !PyUnicode_CheckExact(name) || PyUnicode_GET_LENGTH(name) == 0
        || data == NULL || !PyList_CheckExact(data))
        Py_RETURN_NONE;
    if (shape == NULL || !PyList_CheckExact(shape)) Py_RETURN_NONE;
    length = PyList_GET_SIZE(shape);
    if (length == 2) {
        PyObject *second = PyList_GET_ITEM(shape, 1);
        int overflow = 0;
        long size;
        if (!PyLong_CheckExact(second)) Py_RETURN_NONE;
        size = PyLong_AsLongAndOverflow(second, &overflow);
        if (size == -1 && PyErr_Occurred()) return NULL;
        if (overflow || size != 1) Py_RETURN_NONE;
    } else if (length != 1) {
        Py_RETURN_NONE;
    }
    count = PyList_GET_ITEM(shape, 0);
    if (!PyLong_CheckExact(count)) Py_RETURN_NONE;
    expected = PyLong_AsSsize_t(count);
    if (expected == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
        PyErr_Clear(); /* no list is that long */
        Py_RETURN_NONE;
    }
    if (PyList_GET_SIZE(data) != expected) Py_RETURN_NONE;
    if (expected > 0 && PyList_CheckExact(PyList_GET_ITEM(data, 0))) Py_RETURN_NONE;
    fit = elements_fit(data, kind, &missing);
    if (fit < 0) return NULL;
    if (fit == 0) Py_RETURN_NONE;
    if (missing && kind == NUMBERS) {
        values = with_nan(data);
        if (values == NULL) return NULL;
    } else {
        values = Py_NewRef(data);
    }
    shape_tuple = PyList_AsTuple(shape);
    if (shape_tuple == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    fields = PyTuple_Pack(4, name, datatype, shape_tuple, values);
    Py_DECREF(shape_tuple);
    Py_DECREF(values);
    if (fields == NULL) return NULL;
    /* tuple.__new__(tensor_type, fields), as a NamedTuple's _make does. */
    {
        PyObject *arguments = PyTuple_Pack(1, fields);
        Py_DECREF(fields);
        if (arguments == NULL) return NULL;
        tensor = PyTuple_Type.tp_new(tensor_type, arguments, NULL);
        Py_DECREF(arguments);
    }
    return tensor;
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
        PyObject *tensor = plain_tensor(PyList_GET_ITEM(raw_inputs, i), tensor_type);
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
