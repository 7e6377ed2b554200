"""A large Open Inference Protocol body, parsed in pieces, gives exactly what one parse gives.

The pieces are made tiny here (a few bytes), so that cuts fall everywhere: inside strings that
hold commas, brackets, quotes and ``"data": [``, inside nested arrays, beside trailing and
doubled commas and duplicate or escaped keys. Whatever the body, what the pieces give (or the
error the request gets) must equal one parse of the whole body.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import scorer_core.wire.cells as cells
import scorer_core.wire.oip as oip
import scorer_core.wire.oip_pieces as oip_pieces
from scorer_core.errors import InvalidRequest
from scorer_core.schema import DataType, Field
from scorer_core.wire.native import data_arrays
from scorer_core.wire.oip import frame_of, parse_infer
from scorer_core.wire.oip_pieces import parse_in_pieces

HOSTILE = ['","', "],[", '"data": [', '\\"', "\\", ",", "[", "]", "{", '"', "data", "\x00", "é", " "]
texts = st.lists(st.sampled_from([*HOSTILE, "a", "5.1"]), max_size=4).map("".join)
elements = st.one_of(
    texts,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
)
flat = st.lists(elements, max_size=8)
nested = st.lists(st.lists(elements, min_size=2, max_size=2), max_size=5)
deeper = st.lists(st.lists(st.lists(elements, max_size=2), max_size=2), max_size=3)
data = st.one_of(flat, flat, nested, nested, deeper, texts, st.lists(st.one_of(elements, flat), max_size=5))
DATA_KEYS = ["data", "data", "data", "d\\u0061ta", "data "]  # as spelt in the body: escaped, or another key


def member(key: str, value: Any, indent: int | None) -> str:
    """A member as written, its key raw (so that an escaped spelling stays escaped)."""
    quoted = key if "\\" in key else json.dumps(key)[1:-1]
    return f'"{quoted}": {json.dumps(value, indent=indent)}'


@st.composite
def tensors(draw: st.DrawFn, indent: int | None, well_formed: bool) -> str:
    members = [
        member("name", draw(st.sampled_from(["x", "a", "data"])), indent),
        member("datatype", draw(st.sampled_from(["FP64", "BYTES", "INT64"])), indent),
        member("shape", draw(st.lists(st.integers(0, 4), min_size=1, max_size=2)), indent),
        member("data" if well_formed else draw(st.sampled_from(DATA_KEYS)), draw(data), indent),
    ]
    if not well_formed and draw(st.booleans()):
        members.append(member(draw(st.sampled_from(DATA_KEYS)), draw(data), indent))  # a second data
    if draw(st.booleans()):
        parameters = {"content_type": "str"} if well_formed else {"data": draw(flat), "content_type": "str"}
        members.append(member("parameters", parameters, indent))
    return "{" + ", ".join(draw(st.permutations(members))) + "}"


@st.composite
def bodies(draw: st.DrawFn, well_formed: bool) -> bytes:
    """A request with hostile strings; unless ``well_formed``, also with duplicate and escaped
    data keys, data arrays in parameters, trailing, leading and doubled commas, NaN and truncation."""
    indent = draw(st.sampled_from([None, None, 1]))
    inputs = draw(st.lists(tensors(indent, well_formed), min_size=1, max_size=3))
    members = ['"inputs": [' + ", ".join(inputs) + "]"]
    if draw(st.booleans()):
        members.append(member("id", draw(texts), indent))
    if not well_formed and draw(st.booleans()):
        members.append(member("parameters", {"data": draw(flat)}, indent))  # a data array elsewhere
    body = ("{" + ", ".join(draw(st.permutations(members))) + "}").encode()
    mutations = (
        ["none"]
        if well_formed
        else ["none", "trailing comma", "leading comma", "doubled comma", "NaN", "cut"]
    )
    mutation = draw(st.sampled_from(mutations))
    # Each at any of the places it can go: the end of a data array, its start, between elements.
    places = {"trailing comma": b"]", "leading comma": b"[", "doubled comma": b", "}.get(mutation)
    spots = [i for i in range(len(body)) if places and body.startswith(places, i)]
    if spots:
        at = draw(st.sampled_from(spots)) + (mutation == "leading comma")
        body = body[:at] + b"," + body[at:]
    elif mutation == "NaN" and b"null" in body:
        body = body.replace(b"null", b"NaN", 1)
    elif mutation == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    return body


def as_parsed(value: Any) -> Any:
    """What the pieces give, with nested rows' tuples back as the lists one parse makes."""
    if isinstance(value, (list, tuple)):
        return [as_parsed(v) for v in value]
    if isinstance(value, dict):
        return {k: as_parsed(v) for k, v in value.items()}
    return value


def assert_as_one_parse(pieces: Any, whole: Any) -> None:
    """What the pieces give is what one parse gives, but for the module's two differences: nested
    rows as tuples, and floats as one flat float64 array (of the same floats, row after row)."""
    if isinstance(pieces, np.ndarray):
        assert type(whole) is list and pieces.dtype == np.float64
        flat = [v for row in whole for v in row] if whole and type(whole[0]) is list else whole
        assert all(type(v) is float for v in flat)
        assert pieces.tolist() == flat
    elif isinstance(pieces, dict):
        assert type(whole) is dict and list(pieces) == list(whole)
        for key, value in pieces.items():
            assert_as_one_parse(value, whole[key])
    elif isinstance(pieces, (list, tuple)):
        assert type(whole) is list and len(pieces) == len(whole)
        for mine, theirs in zip(pieces, whole, strict=True):
            assert_as_one_parse(mine, theirs)
    else:
        assert type(pieces) is type(whole) and pieces == whole


def whole(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return "refused"


@settings(max_examples=1200, deadline=None)
@given(body=bodies(well_formed=False), piece=st.integers(2, 40))
def test_what_the_pieces_give_is_what_one_parse_gives(body, piece):
    parsed = parse_in_pieces(body, piece)
    if parsed is not None:
        assert_as_one_parse(parsed, whole(body))


@settings(max_examples=500, deadline=None)
@given(body=bodies(well_formed=True), piece=st.integers(2, 40))
def test_a_well_formed_body_is_parsed_in_pieces(body, piece):
    """Not only refused safely: a common body (its inputs' data the only "data" members) does go
    in pieces, whenever it has an array to cut."""
    parsed = parse_in_pieces(body, piece)
    if data_arrays(body, piece, piece):
        assert parsed is not None
        assert_as_one_parse(parsed, orjson.loads(body))


def test_the_arrays_and_their_cuts_are_found_without_being_fooled_by_strings():
    body = b'{"x": "\\"data\\": [1, 2]", "inputs": [{"data": [10, "],[", [1, 2], 3.5], "name": "data"}]}'
    found = data_arrays(body, 2, 4)
    assert found is not None and len(found) == 1
    start, end, cuts = found[0]
    assert body[start:end] == b'[10, "],[", [1, 2], 3.5]'
    # Commas directly inside the array only, each at least 4 bytes after the last cut.
    # (the first comma is 3 bytes in: too soon; none inside the string or the nested array)
    assert [body[start:c] for c in cuts] == [b'[10, "],["', b'[10, "],[", [1, 2]']
    assert data_arrays(body, 200, 4) == []  # smaller than asked for: parsed with the rest


@pytest.mark.parametrize(
    "body",
    [b'{"inputs": [{"data": [1, 2', b'{"inputs": [{"data": "open', b'{"inputs": ]]', b"[" * 65 + b"]" * 65],
    ids=["array left open", "string left open", "more closes", "too deep"],
)
def test_a_body_that_cannot_be_followed_is_parsed_whole(body):
    assert data_arrays(body, 2, 2) is None
    assert parse_in_pieces(body, 2) is None


def test_rows_of_nested_data_come_as_tuples_and_flat_data_keeps_its_arrays():
    nested = orjson.dumps({"inputs": [{"name": "x", "data": [[1.5, 2.5]] * 40, "shape": [40, 2]}]})
    parsed = parse_in_pieces(nested, 32)
    assert parsed is not None and parsed["inputs"][0]["data"] == [(1.5, 2.5)] * 40
    flat_with_an_array = orjson.dumps({"inputs": [{"name": "x", "data": [1] * 20 + [[2]] * 20}]})
    parsed = parse_in_pieces(flat_with_an_array, 16)
    assert parsed is not None and parsed["inputs"][0]["data"] == [1] * 20 + [[2]] * 20


def elements(values: Any) -> list[Any]:
    """A tensor's elements as Python values: floats parsed in pieces come as a float64 array."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def request_or_error(body: bytes) -> Any:
    try:
        request = parse_infer(body)
    except InvalidRequest as exc:
        return ("400", str(exc))
    inputs = [(t.name, t.datatype, t.shape, as_parsed(elements(t.values))) for t in request.inputs]
    return request.id if b'"id"' in body else None, inputs, request.outputs, request.binary_outputs


@settings(max_examples=700, deadline=None)
@given(body=bodies(well_formed=False), piece=st.integers(2, 40))
def test_a_request_parsed_in_pieces_is_the_request_parsed_whole(body, piece):
    """Through parse_infer: the same tensors, or the same 400, with and without the pieces (and
    without the native reader of small requests, which would take the plain ones first)."""
    with (
        mock.patch.object(oip, "PIECES_FROM_BYTES", 0),
        mock.patch.object(oip, "plain_request", lambda body, tensor_type: None),
        mock.patch.object(oip, "parse_in_pieces", lambda b: None),
    ):
        expected = request_or_error(body)
    with (
        mock.patch.object(oip, "PIECES_FROM_BYTES", 0),
        mock.patch.object(oip, "plain_request", lambda body, tensor_type: None),
        mock.patch.object(oip, "parse_in_pieces", lambda b: parse_in_pieces(b, piece)),
    ):
        assert repr(request_or_error(body)) == repr(expected)  # repr: a NaN equals a NaN


SPOILERS = {  # the integer first: the one a string field would read otherwise ("7", not "7.0")
    "an integer": 7,
    "a null": None,
    "a boolean": True,
    "a string": "1.5",
    "an array": [[1.5]],  # nested deeper than any shape here: [1.5] alone can be a row of width 1
}


@st.composite
def float_inputs(draw: st.DrawFn) -> tuple[bytes, list[Field], bool]:
    """A request of one FP32 or FP64 input, flat or in rows as its shape says, and fields it can
    feed; rarely spoilt by one element that is no float (or a row of the wrong width), at any place.
    Also whether it was spoilt."""
    rows, width = draw(st.integers(1, 12)), draw(st.sampled_from([None, 1, 2, 3]))
    count = rows * (width or 1)
    numbers = st.floats(allow_nan=False, allow_infinity=False, width=draw(st.sampled_from([32, 64])))
    flat: list[Any] = draw(st.lists(numbers, min_size=count, max_size=count))
    spoilt = draw(st.integers(0, 4)) == 2
    if spoilt:
        spoiler = draw(st.sampled_from(list(SPOILERS)))
        event(f"spoilt by {spoiler}")
        flat[draw(st.integers(0, count - 1))] = SPOILERS[spoiler]
    data: list[Any] = flat
    if width is not None and draw(st.booleans()):
        data = [flat[i * width : (i + 1) * width] for i in range(rows)]
        if draw(st.integers(0, 4)) == 2:
            event("spoilt by a ragged row")
            data[draw(st.integers(0, rows - 1))].append(2.5)
            spoilt = True
    names = ["x"] if width in (None, 1) else [f"f{j}" for j in range(width)]
    types = st.sampled_from([DataType.FLOAT64, DataType.FLOAT32, DataType.INT64, DataType.STR])
    fields = [Field(name, draw(types)) for name in names]
    shape = [rows] if width is None else [rows, width]
    tensor = {
        "name": "x" if len(names) == 1 else "matrix",
        "datatype": draw(st.sampled_from(["FP32", "FP64"])),
    }
    body = orjson.dumps({"inputs": [tensor | {"shape": shape, "data": data}]})
    return body, fields, spoilt


def frame_or_error(body: bytes, fields: list[Field]) -> Any:
    try:
        frame = frame_of(parse_infer(body), fields, None)
    except InvalidRequest as exc:
        return ("400", str(exc))
    return [(name, frame[name].dtype, frame[name].tolist()) for name in frame]


@settings(max_examples=500, deadline=None)
@given(request=float_inputs(), piece=st.integers(2, 40))
def test_floats_parsed_in_pieces_into_an_array_feed_the_model_what_one_parse_does(request, piece):
    """Numbers all written as floats come as one float64 array (the module's shortcut), and give
    every field type the same column, or the same 400, as the lists of one parse."""
    body, fields, spoilt = request
    with (
        mock.patch.object(oip, "PIECES_FROM_BYTES", 0),
        mock.patch.object(oip, "plain_request", lambda body, tensor_type: None),
        mock.patch.object(oip, "parse_in_pieces", lambda b: None),
    ):
        expected = frame_or_error(body, fields)
    with (
        mock.patch.object(oip, "PIECES_FROM_BYTES", 0),
        mock.patch.object(oip, "plain_request", lambda body, tensor_type: None),
        mock.patch.object(oip, "parse_in_pieces", lambda b: parse_in_pieces(b, piece)),
    ):
        assert repr(frame_or_error(body, fields)) == repr(expected)
    parsed = parse_in_pieces(body, piece)
    if data_arrays(body, piece, piece) and not spoilt:
        assert parsed is not None and isinstance(parsed["inputs"][0]["data"], np.ndarray)
    elif parsed is not None:  # spoilt: as lists (or tuples), as one parse reads them
        assert not isinstance(parsed["inputs"][0]["data"], np.ndarray)


def test_a_shape_claiming_more_floats_than_the_body_holds_allocates_nothing():
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2**39, 2**39], "data": [1.5] * 64}]}
    )
    with (
        mock.patch.object(oip, "PIECES_FROM_BYTES", 0),
        mock.patch.object(oip, "parse_in_pieces", lambda b: parse_in_pieces(b, 16)),
        mock.patch.object(np, "empty", side_effect=AssertionError("allocated")),
        pytest.raises(
            InvalidRequest, match=r"which holds 302231454903657293676544 elements, but its data has 64$"
        ),
    ):
        parse_infer(body)


@settings(max_examples=500, deadline=None)
@given(
    column=st.lists(
        st.one_of(
            st.floats(), st.integers(-(2**70), 2**70), st.booleans(), st.none(), st.sampled_from(["1", ""])
        ),
        max_size=40,
    ),
    chunk=st.integers(1, 8),
)
def test_a_column_made_a_chunk_at_a_time_is_the_column_made_at_once(column, chunk):
    def made(values: list[Any]) -> Any:
        try:
            array = cells._as_array(values)
        except (ValueError, OverflowError) as exc:
            return type(exc)
        return array.dtype, array.tolist()

    with mock.patch.object(cells, "ARRAY_CHUNK", 10**9):
        expected = made(column)
    with mock.patch.object(cells, "ARRAY_CHUNK", chunk):
        assert repr(made(column)) == repr(expected)  # repr: NaN equals NaN


def test_a_bad_element_is_named_at_its_position_when_types_are_gathered_in_chunks():
    values = [1.5] * 10 + ["seven"] + [2.5] * 10
    with mock.patch.object(oip, "TYPE_CHUNK", 3):
        with pytest.raises(
            InvalidRequest, match=r"^element 10 of input 'x' is 'seven', not FP64 \(a number\)$"
        ):
            oip._from_json(values, "FP64", "x")
        missing = oip._from_json([1.5, None, 2] * 4, "FP64", "x")  # None in a later chunk too
    assert [np.isnan(v) for v in missing] == [False, True, False] * 4


def test_a_late_element_of_another_type_costs_no_second_parse_of_the_pieces_before_it():
    """The floats kept until then are handed to the general way as it would have made them."""
    data = [[1.5, 2.5]] * 40 + [[3.5, 7]]  # 7: an integer, as JavaScript writes 7.0
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [41, 2], "data": data}]})
    pieces = len(data_arrays(body, 16, 16)[0][2]) + 1
    with mock.patch.object(oip_pieces.orjson, "loads", side_effect=orjson.loads) as loads:
        parsed = parse_in_pieces(body, 16)
    assert loads.call_count == pieces + 1  # each piece once, and the rest of the body
    assert parsed is not None and parsed["inputs"][0]["data"] == [(1.5, 2.5)] * 40 + [(3.5, 7)]
    assert type(parsed["inputs"][0]["data"][0][0]) is float
