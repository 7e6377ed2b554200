"""The native reader of a small OIP request gives what orjson and the tensor reader give, or None.

``plain_request`` (``wire/_tensors.c``) reads a request's bytes itself, where ``parse_infer``
would otherwise parse them with orjson and read the inputs with ``plain_tensors`` (which
``tests/test_oip_wire.py`` compares with its Python reference). Whatever the body, what it
returns must be what those two give; and on the bodies clients send, it must not just refuse.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.errors import InvalidRequest
from scorer_core.wire.native import plain_request, plain_tensors
from scorer_core.wire.oip import Tensor, parse_infer

#: Numbers as a client may spell them: any JSON number, now and then one that is not JSON.
JSON_NUMBERS = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,21})(\.[0-9]{1,22})?([eE][+-]?[0-9]{1,3})?\Z", fullmatch=True),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-0", "-0.0", "0.1", "1e-400", "9007199254740993.0", "1e22", "1e23", "5e-324"]),
)
NOT_JSON = st.sampled_from(
    ["01", "1.", ".5", "+1", "-", "1e", "NaN", "Infinity", "--1", "1.5.2", "tru", "1E400"]
)
INTEGERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(-(2**66), 2**66)
).map(str)
TEXTS = st.one_of(
    st.text(max_size=4).map(json.dumps),  # escaped where JSON needs it
    st.text(max_size=4).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"a"', '"é"', '"\\u0041"', '"tab\tin"', '""']),
)
ELEMENTS = {
    '"FP64"': st.one_of(JSON_NUMBERS, JSON_NUMBERS, INTEGERS, st.just("null")),
    '"FP32"': st.one_of(JSON_NUMBERS, st.just("null")),
    '"INT64"': st.one_of(INTEGERS, st.just("null")),
    '"BYTES"': st.one_of(TEXTS, st.just("null")),
    '"BOOL"': st.sampled_from(["true", "false", "null"]),
}
SCALARS = st.one_of(JSON_NUMBERS, TEXTS, st.sampled_from(["true", "false", "null"]))
BLANKS = st.sampled_from(["", "", " ", "\n  ", "\t", "\r\n"])


def array(items: st.SearchStrategy[str], max_size: int = 4, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.tuples(st.lists(items, min_size=min_size, max_size=max_size), BLANKS).map(
        lambda t: "[" + f",{t[1]}".join(t[0]) + "]"
    )


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        array(inner),
        st.lists(
            st.tuples(st.sampled_from(["a", "content_type", "binary_data_size"]), inner), max_size=3
        ).map(lambda members: "{" + ", ".join(f'"{k}": {v}' for k, v in members) + "}"),
    ),
    max_leaves=6,
)
ODD_DATATYPES = st.sampled_from(['"UINT8"', "1", '"FP\\u0036\\u0034"', "null"])


def rarely(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 29)) == 13  # not 0: Hypothesis draws the ends of a range often


@st.composite
def inputs(draw: st.DrawFn) -> str:
    """Mostly a plain input, spelt in any of JSON's ways; now and then anything but."""
    datatype = draw(st.sampled_from(sorted(ELEMENTS)))
    kinds = ELEMENTS[datatype] if not rarely(draw) else st.one_of(SCALARS, NOT_JSON)
    elements = draw(st.lists(kinds, max_size=3))
    data = "[" + f",{draw(BLANKS)}".join(elements) + "]"
    shape = f"[{len(elements)}]" if draw(st.booleans()) else f"[{len(elements)}, 1]"
    members = {
        "name": draw(st.sampled_from(['"x"', '"f1"', '"é"']))
        if not rarely(draw)
        else draw(st.sampled_from(['""', "7", '"\\u0078"'])),
        "datatype": datatype if not rarely(draw) else draw(ODD_DATATYPES),
        "shape": shape
        if not rarely(draw)
        else draw(st.sampled_from(["[1]", "[2]", "[1.0]", "[]", "[1, 2]"])),
        "data": data if not rarely(draw) else draw(VALUES),
    }
    if draw(st.booleans()):
        members["parameters"] = '{"content_type": "str"}' if not rarely(draw) else draw(VALUES)
    pairs = [(f'"{k}"', v) for k, v in members.items() if not rarely(draw)]
    if rarely(draw):  # a repeated member, an unknown one, an escaped key, or one that is no UTF-8
        key = draw(st.sampled_from(['"data"', '"extra"', '"d\\u0061ta"', '"name"', '"\udcff"', '"é"']))
        pairs.append((key, draw(VALUES)))
    pairs = draw(st.permutations(pairs))
    blank = draw(BLANKS)
    return "{" + f",{blank}".join(f"{k}:{blank}{v}" for k, v in pairs) + "}"


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    members = [('"inputs"', draw(array(inputs(), 3, min_size=1)))]
    for key, value in (('"id"', TEXTS), ('"parameters"', VALUES), ('"outputs"', VALUES), ('"x"', VALUES)):
        if rarely(draw):
            members.append((key, draw(value)))
    if rarely(draw):
        members.append(('"inputs"', draw(array(inputs(), 2))))  # twice: the last wins in orjson
    members = draw(st.permutations(members))
    blank = draw(BLANKS)
    text = blank + "{" + ", ".join(f"{k}: {v}" for k, v in members) + "}" + blank
    body = text.encode("utf-8", "surrogateescape")  # "\udcff" stands for the byte 0xff
    if rarely(draw):
        body = body[: draw(st.integers(0, len(body)))]
    elif rarely(draw):
        body += draw(st.sampled_from([b"x", b",", b"}", b" {}"]))
    elif rarely(draw):  # bytes that are no UTF-8, anywhere: in a string, a key, between tokens
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])) + body[at:]
    return body


def reference(body: bytes) -> Any:
    """What parse_infer reads from orjson's parse, for a request of plain inputs; None otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    raw_inputs = data.get("inputs") if type(data) is dict else None
    if type(raw_inputs) is not list or not raw_inputs:
        return None
    tensors = plain_tensors(raw_inputs, Tensor)
    if tensors is None:
        return None
    return data.get("id"), data.get("parameters"), tensors, data.get("outputs")


def comparable(read: Any) -> str:
    return repr(read)  # exact: a float's repr is its value, NaN included, and types show


@settings(max_examples=1500, deadline=None)
@given(bodies())
def test_the_native_request_reader_gives_what_orjson_and_the_tensor_reader_give(body):
    native = plain_request(body, Tensor)
    if native is not None:
        assert comparable(native) == comparable(reference(body))


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["FP64", "INT64", "BYTES", "BOOL"]),
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(10**18) + 1, 10**18 - 1),
            st.text(
                alphabet=st.characters(min_codepoint=0x20, exclude_characters='"\\', codec="utf-8"),
                max_size=8,
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_the_bodies_clients_send_are_read_natively(columns, indented):
    """The pd convention as MLServer's and KServe's clients write it: read here, never refused."""
    tensors = []
    for i, (datatype, number, integer, text, flag) in enumerate(columns):
        value = {"FP64": number, "INT64": integer, "BYTES": text, "BOOL": flag}[datatype]
        tensor: dict[str, Any] = {"name": f"f{i}", "shape": [1], "datatype": datatype, "data": [value]}
        if datatype == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        tensors.append(tensor)
    request = {"parameters": {"content_type": "pd"}, "inputs": tensors, "id": "r-1"}
    body = json.dumps(request, indent=1 if indented else None, ensure_ascii=False).encode()
    native = plain_request(body, Tensor)
    assert native is not None
    assert comparable(native) == comparable(reference(body))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_body_that_is_not_utf8_is_never_read_natively(data):
    """orjson refuses a body that is not UTF-8 wherever the byte is: in a value, in a key the
    request does not read, between tokens. The native reader must not answer for such a body."""
    request = {
        "id": "r",
        "inputs": [
            {"name": "x", "datatype": "BYTES", "shape": [1], "data": ["ab"], "extra": 1},
            {"name": "y", "datatype": "FP64", "shape": [1], "data": [1.5]},
        ],
        "other": {"k": "v"},
    }
    body = json.dumps(request).encode()
    assert plain_request(body, Tensor) is not None
    at = data.draw(st.integers(0, len(body)))
    bad = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]))
    mutated = body[:at] + bad + body[at:]
    native = plain_request(mutated, Tensor)
    assert native is None or comparable(native) == comparable(reference(mutated))


def test_numbers_are_read_as_orjson_reads_them_on_both_sides_of_the_fast_path():
    spelt = [
        "0.1",
        "15.73",
        "-0.0",
        "1e22",
        "1e23",
        "123456789012345",
        "1234567890123456.5",
        "9007199254740993.0",
    ]
    spelt += [
        "0.000001",
        "1e-22",
        "1e-23",
        "2.2250738585072014e-308",
        "5e-324",
        "1.7976931348623157e308",
        "-0",
    ]
    body = "[" + ", ".join(spelt) + "]"
    request = f'{{"inputs": [{{"name": "x", "datatype": "FP64", "shape": [{len(spelt)}], "data": {body}}}]}}'
    native = plain_request(request.encode(), Tensor)
    assert native is not None
    assert repr(native[2][0].values) == repr(orjson.loads(body))


def test_parse_infer_answers_alike_with_and_without_the_native_reader(monkeypatch):
    body = b'{"id": 7, "inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.5]}]}'
    assert plain_request(body, Tensor) is not None  # read natively: the id's check is parse_infer's
    with pytest.raises(InvalidRequest, match="'id' must be a string, got 7"):
        parse_infer(body)
    monkeypatch.setattr("scorer_core.wire.oip.plain_request", lambda body, tensor_type: None)
    with pytest.raises(InvalidRequest, match="'id' must be a string, got 7"):
        parse_infer(body)


def test_the_native_request_reader_refuses_wrong_arguments():
    with pytest.raises(TypeError):
        plain_request("{}", Tensor)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        plain_request(b"{}", dict)  # type: ignore[type-var]
    assert plain_request(b"{}", Tensor) is None
