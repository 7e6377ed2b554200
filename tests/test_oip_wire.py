"""The Open Inference Protocol's bodies (``wire.oip``): tensors parsed and checked, rows typed as the
H2O path types cells, answers written in JSON and in the binary tensor extension's layout."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.errors import InvalidRequest
from scorer_core.frame import Frame
from scorer_core.schema import DataType, Field
from scorer_core.wire.cellrows import KEPT_ROWS, CellRows
from scorer_core.wire.cells import build_frame
from scorer_core.wire.oip import check_outputs, frame_of, infer_response, parse_infer, rows_of

INPUTS = (
    Field("city", DataType.STR),
    Field("rooms", DataType.INT64),
    Field("area", DataType.FLOAT64),
    Field("new", DataType.BOOL),
)


def _body(*inputs, **extra):
    return orjson.dumps({"inputs": list(inputs), **extra})


def _wide(*inputs, **extra):
    """A body with integers past 64 bits, which orjson does not write."""
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def _input(name, datatype, data, shape=None, **extra):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data, **extra}


def _bytes_blob(values):
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def test_each_column_typed_as_the_h2o_path_types_the_same_cells():
    request = parse_infer(
        _body(
            _input("city", "BYTES", ["Oslo", None, ""]),
            _input("rooms", "INT64", [3, None, 1]),
            _input("area", "FP64", [70.5, None, 12]),
            _input("new", "BOOL", [True, False, True]),
        )
    )
    frame = frame_of(request, INPUTS, None)
    expected = build_frame(
        [f.name for f in INPUTS],
        [["Oslo", "3", "70.5", "true"], [None, None, None, "false"], ["", "1", "12", "true"]],
        INPUTS,
    )
    for spec in INPUTS:
        got, want = frame[spec.name], expected[spec.name]
        assert got.dtype == want.dtype, spec
        assert [None if isinstance(v, float) and math.isnan(v) else v for v in got.tolist()] == [
            None if isinstance(v, float) and math.isnan(v) else v for v in want.tolist()
        ], spec


def test_binary_inputs_after_the_json_header():
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "city", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 16}},
                {
                    "name": "rooms",
                    "datatype": "INT32",
                    "shape": [2, 1],
                    "parameters": {"binary_data_size": 8},
                },
                {"name": "area", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
                _input("new", "BOOL", [False, True]),
            ]
        }
    )
    blob = (
        _bytes_blob(["Oslo", "Rome"])
        + np.array([3, 4], "<i4").tobytes()
        + np.array([1.5, 2], "<f4").tobytes()
    )
    frame = frame_of(parse_infer(header + blob, str(len(header))), INPUTS, None)
    assert frame["city"].tolist() == ["Oslo", "Rome"]
    assert frame["rooms"].tolist() == [3, 4] and frame["rooms"].dtype == np.int64
    assert frame["area"].tolist() == [1.5, 2.0]
    assert frame["new"].tolist() == [False, True]


@pytest.mark.parametrize(
    ("body", "header_length", "says"),
    [
        (b'{"inputs": []}', "99", "Inference-Header-Content-Length is 99"),
        (b'{"inputs": []}', "-1", "Inference-Header-Content-Length is -1"),
        (
            _body({"name": "rooms", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 8}})
            + b"\x00" * 8,
            None,
            "needs an Inference-Header-Content-Length header",
        ),
        (
            _body(
                {"name": "rooms", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 8}}
            ),
            "__header__",
            "bytes of binary data are left",
        ),
        (
            _body({"name": "city", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 6}})
            + b"\x05\x00\x00\x00ab",
            "__header__",
            "does not hold exactly 2 BYTES elements",
        ),
        (
            _body({"name": "area", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 8}})
            + b"\x00" * 8,
            "__header__",
            "declares 2 FP64 elements (16 bytes)",
        ),
        (
            _body(_input("a", "FP64", [1.0]), _input("b", "FP64", [1.0])) + b"extra",
            "__header__",
            "no input's",
        ),
        (_body(_input("rooms", "INT8", [1000])), None, "beyond INT8's range"),
        (_body(_input("rooms", "INT64", [True])), None, "is True, not INT64"),
        (_body(_input("city", "BYTES", [1])), None, "is 1, not BYTES (a string)"),
        (_body(_input("x", "FP64", [[[1.0]]], shape=[-1])), None, "has shape [-1]"),
        (_body(_input("x", "FP64", [1.0], data_and=1), parameters=[]), None, "must be an object"),
        (b"[1, 2]", None, "a JSON object with 'inputs'"),
        (orjson.dumps({"id": 7, "inputs": [_input("x", "FP64", [1.0])]}), None, "'id' must be a string"),
    ],
)
def test_malformed_requests_are_invalid_naming_what(body, header_length, says):
    if header_length == "__header__":
        header_length = str(body.index(b"}]}") + 3)
    with pytest.raises(InvalidRequest) as raised:
        parse_infer(body, header_length)
    assert says in raised.value.message, raised.value.message


def test_a_matrix_of_every_field_in_schema_order():
    numbers = (Field("a", DataType.FLOAT64), Field("b", DataType.INT32))
    request = parse_infer(_body(_input("x", "FP32", [1.5, 2, 3.25, 4], shape=[2, 2])))
    frame = frame_of(request, numbers, None)
    assert frame["a"].tolist() == [1.5, 3.25] and frame["b"].tolist() == [2, 4]
    with pytest.raises(InvalidRequest, match=r"fraction|cannot parse 3\.25|Int32"):
        frame_of(parse_infer(_body(_input("x", "FP32", [1.5, 3.25, 2, 4], shape=[2, 2]))), numbers, None)
    with pytest.raises(InvalidRequest, match=r"shape \[1, 3\]; the model has 2 fields"):
        frame_of(parse_infer(_body(_input("x", "FP64", [1, 2, 3], shape=[1, 3]))), numbers, None)


def test_inputs_the_model_does_not_read_are_ignored():
    request = parse_infer(_body(_input("a", "FP64", [1.0]), _input("note", "BYTES", ["x"])))
    assert frame_of(request, (Field("a", DataType.FLOAT64),), None).columns == ["a"]


def test_answers_in_json_and_in_binary():
    fields = (Field("label", DataType.STR), Field("p", DataType.FLOAT64), Field("n", DataType.INT64))
    outputs = {
        "label": np.array(["yes", None], dtype=object),
        "p": np.array([0.25, math.nan]),
        "n": np.array([1, 2]),
    }
    request = parse_infer(_body(_input("a", "FP64", [1.0, 2.0]), id="q"))
    payload, length = infer_response("m", "v1", request, fields, outputs)
    assert length is None
    assert orjson.loads(payload) == {
        "model_name": "m",
        "model_version": "v1",
        "id": "q",
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["yes", None]},
            {"name": "p", "datatype": "FP64", "shape": [2], "data": [0.25, None]},
            {"name": "n", "datatype": "INT64", "shape": [2], "data": [1, 2]},
        ],
    }
    wanted = [{"name": "n"}, {"name": "label", "parameters": {"binary_data": True}}]
    request = parse_infer(_body(_input("a", "FP64", [1.0, 2.0]), outputs=wanted))
    check_outputs(request, fields)
    payload, length = infer_response("m", "v1", request, fields, outputs)
    assert length is not None
    header = orjson.loads(payload[:length])
    assert [o["name"] for o in header["outputs"]] == ["n", "label"]
    assert header["outputs"][0]["data"] == [1, 2]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 4 + 3 + 4}
    assert payload[length:] == _bytes_blob(["yes", ""])
    with pytest.raises(InvalidRequest, match="no output 'x'; its outputs are 'label', 'p', 'n'"):
        check_outputs(parse_infer(_body(_input("a", "FP64", [1.0]), outputs=[{"name": "x"}])), fields)


def test_a_small_request_keeps_its_cells_for_its_batch_and_they_type_to_the_same_columns():
    request = parse_infer(
        _body(
            _input("city", "BYTES", ["Oslo", None]),
            _input("rooms", "INT64", [3, 4]),
            _input("area", "FP64", [70.5, None]),
            _input("new", "BOOL", [True, False]),
        )
    )
    kept = rows_of(request, INPUTS, None, keep_cells=True)
    assert isinstance(kept, CellRows) and kept.num_rows == 2
    now = frame_of(request, INPUTS, None)
    later = kept.typed()
    for spec in INPUTS:
        assert later[spec.name].dtype == now[spec.name].dtype
        assert np.array_equal(later[spec.name], now[spec.name], equal_nan=spec.data_type is DataType.FLOAT64)
    many = parse_infer(_body(_input("area", "FP64", [1.0] * (KEPT_ROWS + 1))))
    assert isinstance(rows_of(many, (Field("area", DataType.FLOAT64),), None, keep_cells=True), Frame)


PLAIN_BODIES = [
    [
        _input("city", "BYTES", ["Oslo", None], parameters={"content_type": "str"}),
        _input("area", "FP64", [1.5, None]),
    ],
    [_input("rooms", "INT64", [3, None], shape=[2, 1]), _input("new", "BOOL", [True, None])],
    [_input("area", "FP32", [1, 2.5]), _input("x", "FP64", [])],
]
CAREFUL_ONLY = [
    [_input("area", "FP64", [[1.5], [2.5]], shape=[2, 1])],  # nested data
    [_input("area", "FP64", [True])],  # a bool where a number goes: the careful path names it
    [_input("rooms", "INT32", [3])],  # a range to check
    [_input("area", "FP64", [1.0], shape=[1, 1, 1])],
    [{"name": "area", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}],
    [_input("area", "FP64", [1.0], parameters=[])],
]


@pytest.mark.parametrize("inputs", PLAIN_BODIES)
def test_the_plain_path_reads_common_inputs_exactly_as_the_careful_path(inputs):
    from scorer_core.wire.oip import _plain_tensors, _tensor

    careful = [_tensor(raw, i, b"", 0)[0] for i, raw in enumerate(orjson.loads(orjson.dumps(inputs)))]
    assert _comparable(_plain_tensors(orjson.loads(orjson.dumps(inputs)))) == _comparable(careful)
    assert _comparable(reference_plain_tensors(orjson.loads(orjson.dumps(inputs)))) == _comparable(careful)


@pytest.mark.parametrize("inputs", CAREFUL_ONLY)
def test_anything_else_is_left_to_the_careful_path(inputs):
    from scorer_core.wire.oip import _plain_tensors

    assert _plain_tensors(orjson.loads(orjson.dumps(inputs))) is None
    assert reference_plain_tensors(orjson.loads(orjson.dumps(inputs))) is None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PLAIN = {
    "FP64": frozenset({float, int, type(None)}),
    "FP32": frozenset({float, int, type(None)}),
    "INT64": frozenset({int, type(None)}),
    "BYTES": frozenset({str, type(None)}),
    "BOOL": frozenset({bool, type(None)}),
}


def reference_plain_tensors(raw_inputs):
    """What wire/_tensors.c's plain_tensors does, in Python: the native reader must agree."""
    from scorer_core.wire.oip import Tensor

    tensors = []
    missing = type(None)
    for raw in raw_inputs:
        if type(raw) is not dict:
            return None
        parameters = raw.get("parameters")
        if parameters is not None and (type(parameters) is not dict or "binary_data_size" in parameters):
            return None
        name, datatype, shape, data = (raw.get(k) for k in ("name", "datatype", "shape", "data"))
        allowed = _PLAIN.get(datatype) if type(datatype) is str else None
        if allowed is None or type(name) is not str or not name or type(data) is not list:
            return None
        if type(shape) is not list or not (
            len(shape) == 1 or (len(shape) == 2 and type(shape[1]) is int and shape[1] == 1)
        ):
            return None
        count = shape[0]
        if type(count) is not int or len(data) != count or (data and type(data[0]) is list):
            return None
        found = set(map(type, data))
        if not found <= allowed:
            return None
        if datatype == "INT64" and data:
            present = [v for v in data if v is not None] if missing in found else data
            if present and (min(present) < _INT64_MIN or max(present) > _INT64_MAX):
                return None
        if missing in found and datatype[0] == "F":
            data = [math.nan if v is None else v for v in data]
        tensors.append(Tensor(name, datatype, tuple(shape), data))
    return tensors


def _comparable(tensors):
    """Tensors with NaN written out: NaN equals nothing, not even itself."""
    if tensors is None:
        return None
    return [(type(t).__name__, t.name, t.datatype, t.shape, repr(t.values)) for t in tensors]


_ELEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
_RAW_INPUT = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["a", "b", ""]), st.integers()),
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "INT32", "fp64", 7]),
        "shape": st.one_of(
            st.lists(st.integers(min_value=-2, max_value=2**64), min_size=1, max_size=3),
            st.lists(st.one_of(st.booleans(), st.floats(), st.none()), min_size=1, max_size=2),
            st.just(2),
        ),
        "data": st.one_of(st.lists(_ELEMENTS, max_size=3), st.just("x")),
        "parameters": st.one_of(
            st.none(),
            st.just({}),
            st.just({"binary_data_size": 8}),
            st.just({"content_type": "str"}),
            st.just([]),
        ),
    },
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.one_of(_RAW_INPUT, st.integers(), st.none()), min_size=1, max_size=3))
def test_the_native_reader_agrees_with_the_reference_on_any_inputs(raw_inputs):
    from scorer_core.wire.oip import _plain_tensors

    assert _comparable(_plain_tensors(raw_inputs)) == _comparable(reference_plain_tensors(raw_inputs))


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_the_native_reader_agrees_on_well_formed_columns(data):
    """Inputs that mostly are plain, so that both paths build tensors, not only refuse."""
    from scorer_core.wire.oip import _plain_tensors

    elements = {
        "FP64": st.one_of(
            st.floats(allow_nan=False), st.integers(min_value=-(2**64), max_value=2**64), st.none()
        ),
        "FP32": st.one_of(st.floats(allow_nan=False), st.none()),
        "INT64": st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.none()),
        "BYTES": st.one_of(st.text(max_size=4), st.none()),
        "BOOL": st.one_of(st.booleans(), st.none()),
    }
    raw_inputs = []
    for i in range(data.draw(st.integers(min_value=1, max_value=4))):
        datatype = data.draw(st.sampled_from(sorted(elements)))
        values = data.draw(st.lists(elements[datatype], max_size=4))
        shape = data.draw(st.sampled_from([[len(values)], [len(values), 1]]))
        raw_inputs.append({"name": f"f{i}", "datatype": datatype, "shape": shape, "data": values})
    native = _plain_tensors(raw_inputs)
    assert _comparable(native) == _comparable(reference_plain_tensors(raw_inputs))
    if native is not None:  # the request's own list, but a copy where NaN was put in
        for tensor, raw in zip(native, raw_inputs, strict=True):
            copied = tensor.datatype.startswith("FP") and None in raw["data"]
            assert (tensor.values is raw["data"]) is not copied


def test_the_native_reader_refuses_wrong_arguments():
    from scorer_core.wire._tensors import plain_tensors

    with pytest.raises(TypeError):
        plain_tensors((), tuple)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        plain_tensors([], dict)  # type: ignore[type-var]
    assert plain_tensors([], tuple) == []


@pytest.mark.parametrize(
    ("body", "header_length", "says"),
    [
        # A shape of thousands of huge sizes was a product of thousands of digits: a stall, then a 500.
        (_wide(_input("x", "FP64", [1.0], shape=[2**62] * 300)), None, "a shape is an array of 1 to 8 sizes"),
        (_wide(_input("x", "FP64", [1.0], shape=[2**64])), None, "each a whole number below 2**64"),
        (_wide(_input("x", ["FP64"], [1.0])), None, "has datatype ['FP64']"),  # was a TypeError: 500
        (_wide(_input("x", {"a": 1}, [1.0])), None, "has datatype {'a': 1}"),
        (_wide(_input("x", "FP64", [1.0], shape=[1, 1.0])), None, "a shape is an array"),
        (_wide(_input("x", "FP64", [1.0], shape=[1, True])), None, "a shape is an array"),
        (_wide(_input("x", "UINT64", [-1])), None, "beyond UINT64's range"),
        (_wide(_input("x", "INT64", [2**63])), None, "beyond INT64's range"),
        (
            _wide(_input("x", "FP64", [[5.1, 3.5], [1.4, 0.2, 1, 1]], shape=[2, 3])),
            None,
            "nested, but not as",
        ),
        (_wide(_input("x", "FP64", [[[1.0]], [[2.0]]], shape=[2, 1])), None, "nested deeper than its shape"),
        (
            _wide(_input("x", "FP64", [1.0]), outputs=[{"name": "y"}, {"name": "y"}]),
            None,
            "'y' is requested twice",
        ),
        (
            _wide(_input("x", "FP64", [1.0]), outputs=[{"name": "y", "parameters": {"binary_data": "yes"}}]),
            None,
            "binary_data of output 'y' must be true or false",
        ),
        (_wide(_input("x", "FP64", [1.0])), "+19", "Inference-Header-Content-Length is +19"),
        (_wide(_input("x", "FP64", [1.0])), " 19 ", "Inference-Header-Content-Length is  19 "),
    ],
    ids=[
        "many-huge-dimensions",
        "a-size-past-uint64",
        "a-list-datatype",
        "an-object-datatype",
        "a-float-size",
        "a-bool-size",
        "a-negative-uint64",
        "past-int64",
        "ragged",
        "deeper-than-the-shape",
        "an-output-twice",
        "binary-data-not-a-bool",
        "a-signed-header-length",
        "a-padded-header-length",
    ],
)
def test_what_a_red_team_sent_is_a_400_naming_it(body, header_length, says):
    with pytest.raises(InvalidRequest) as raised:
        parse_infer(body, header_length)
    assert says in raised.value.message, raised.value.message


def test_nested_data_as_the_shape_says_is_read_row_major():
    request = parse_infer(_body(_input("x", "FP64", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], shape=[2, 3])))
    assert request.inputs[0].values == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_thousands_of_duplicate_inputs_are_named_ten_at_a_time():
    inputs = [_input(f"i{n % 20_000}", "FP64", [1.0]) for n in range(40_000)]
    with pytest.raises(InvalidRequest) as raised:
        parse_infer(_body(*inputs))
    assert raised.value.message.startswith("duplicate inputs: 'i0', 'i1', 'i10'")
    assert raised.value.message.endswith("and 19,990 more") or raised.value.message.endswith("and 19990 more")


@pytest.mark.parametrize(
    ("field", "column", "says"),
    [
        (Field("n", DataType.INT64), np.array([1.0, math.nan]), "holds missing values"),
        (Field("n", DataType.INT64), np.array([1, None], dtype=object), "holds missing values"),
        (Field("b", DataType.BOOL), np.array([True, None], dtype=object), "holds missing values"),
        (Field("n", DataType.INT32), np.array([2**40]), "beyond INT32's range"),
        (Field("n", DataType.INT64), np.array([1.5]), "holds fractions"),
    ],
)
def test_a_binary_output_the_layout_cannot_carry_is_a_model_error_not_garbage(field, column, says):
    from scorer_core.errors import ModelError
    from scorer_core.wire.oip import binary_output

    with pytest.raises(ModelError, match=says):
        binary_output(column, field)
    assert binary_output(np.array([3, 4]), Field("n", DataType.INT32)) == np.array([3, 4], "<i4").tobytes()


def test_the_native_reader_survives_a_key_that_empties_the_inputs_while_it_reads():
    """A caller's own dict, not orjson's: a key of the same hash as "name" whose __eq__ empties the
    list. The reader must hold its own references (it crashed with borrowed ones); in a process
    of its own, so that a crash fails this test rather than the test run."""
    import subprocess
    import sys

    script = """
from scorer_core.wire._tensors import plain_tensors
from scorer_core.wire.oip import Tensor
inputs = []
class Emptying:
    def __hash__(self):
        return hash("name")
    def __eq__(self, other):
        inputs.clear()
        return False
inputs.append({Emptying(): 0, "name": "a", "datatype": "FP64", "shape": [1], "data": [1.0]})
inputs.append({"name": "b", "datatype": "FP64", "shape": [1], "data": [1.0]})
print(plain_tensors(inputs, Tensor))
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "None"
