"""A large body's rows, parsed in pieces, give exactly what one parse of the whole body gives.

The pieces are made tiny here (a few bytes), so that cuts fall everywhere: inside strings that
hold ``],``, ``]]``, quotes and ``"rows": [``, inside nested arrays, beside trailing commas and
duplicate keys. Whatever the body, the request parsed in pieces (or the error it gets) must
equal the request parsed whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scorer_core.wire.contract as contract
import scorer_core.wire.rows_array as rows_array
from scorer_core.errors import InvalidRequest
from scorer_core.wire.contract import ContributionRequest, ScoreRequest, parse_request
from scorer_core.wire.rows_array import parse_pieces, split_rows

HOSTILE = ['],["', "]]", '"rows": [', '\\"', "\\", ",", "[", "]", '"', "rows", "\x00", "é", " "]
texts = st.lists(st.sampled_from([*HOSTILE, "a", "5.1"]), max_size=4).map("".join)
cells = st.one_of(
    texts,
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(texts, max_size=2),  # a nested array as a cell
    st.dictionaries(st.sampled_from(["rows", "a"]), texts, max_size=2),
)
cell_rows = st.lists(cells, max_size=4)
row = st.one_of(cell_rows, cell_rows, cell_rows, cell_rows, cell_rows, texts, st.integers())
extra_values = st.one_of(
    texts,
    st.lists(st.lists(texts, max_size=2), max_size=3),
    st.fixed_dictionaries({"rows": st.lists(st.lists(texts, max_size=2), max_size=3)}),  # a nested "rows"
)


@st.composite
def bodies(draw: st.DrawFn, well_formed: bool) -> bytes:
    """A body with hostile strings; unless ``well_formed``, also with rows that are not arrays,
    duplicate keys, trailing and doubled commas, NaN and truncation."""
    members: list[tuple[str, Any]] = [
        ("fields", draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=3))),
        ("rows", draw(st.lists(cell_rows if well_formed else row, min_size=1, max_size=8))),
    ]
    members += draw(st.lists(st.tuples(st.sampled_from(['x"rows', "rows ", "extra", "rowsx"]), extra_values), max_size=3))
    if not well_formed and draw(st.booleans()):
        members.append(("rows", draw(st.lists(st.lists(texts, max_size=2), max_size=2))))  # a duplicate key
    members = draw(st.permutations(members))
    indent = draw(st.sampled_from([None, None, 1]))
    # A list of pairs keeps duplicate keys, which a dict would merge.
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v, indent=indent)}" for k, v in members) + "}"
    body = text.encode()
    mutations = ["none"] if well_formed else ["none", "trailing comma", "doubled comma", "NaN", "cut short"]
    mutation = draw(st.sampled_from(mutations))
    if mutation == "trailing comma" and b"]]" in body:
        at = body.rindex(b"]]") + 1
        body = body[:at] + b"," + body[at:]
    elif mutation == "doubled comma" and b"],[" in body:
        at = body.index(b"],[") + 1
        body = body[:at] + b",," + body[at + 1 :]
    elif mutation == "NaN" and b"null" in body:
        body = body.replace(b"null", b"NaN", 1)
    elif mutation == "cut short":
        body = body[: draw(st.integers(0, len(body)))]
    return body


@contextmanager
def cut_into_pieces_of(chunk: int) -> Iterator[None]:
    """Every body parsed in pieces of about ``chunk`` bytes (10**9: every body parsed whole)."""
    with (
        mock.patch.object(contract, "PARSE_CHUNK_BYTES", 0 if chunk < 10**9 else chunk),
        mock.patch.object(rows_array, "PARSE_CHUNK_BYTES", chunk),
    ):
        yield


def outcome(model: type[ScoreRequest] | type[ContributionRequest], body: bytes) -> Any:
    """The parse's result or its 400, as text: a ``NaN`` cell (which the parser accepts) is not
    equal to itself, so two equal parses compare by their reprs, which also tell -0.0 from 0.0."""
    return repr(_outcome(model, body))


def _outcome(model: type[ScoreRequest] | type[ContributionRequest], body: bytes) -> Any:
    try:
        request = parse_request(model, body)
    except InvalidRequest as exc:
        return ("400", str(exc))
    shown = request.model_dump(exclude={"rows"})
    shown["rows"] = [list(r) if isinstance(r, tuple) else r for r in request.rows]
    return shown


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(bodies(well_formed=True), bodies(well_formed=False)), chunk=st.integers(1, 48))
def test_rows_parsed_in_pieces_equal_one_parse_of_the_whole_body(body, chunk):
    with cut_into_pieces_of(10**9):
        whole = outcome(ScoreRequest, body)
    with cut_into_pieces_of(chunk):
        in_pieces = outcome(ScoreRequest, body)
    assert in_pieces == whole


def test_the_property_reaches_the_pieces_path():
    """A check that the property above can fail: bodies it generates do take the pieces path."""
    body = b'{"fields": ["x"], "rows": [["a"], ["],[\\"b"], [1, [2]], ["c"]], "extra": [["d"]]}'
    split = split_rows(body)
    assert split is not None and split.envelope == {"fields": ["x"], "rows": [], "extra": [["d"]]}
    with mock.patch.object(rows_array, "PARSE_CHUNK_BYTES", 3):
        assert len(rows_array.row_pieces(split.rows)) > 2
        # Cuts inside the string and the nested array are passed by growing the piece.
        assert parse_pieces(split.rows) == [("a",), ('],["b',), (1, [2]), ("c",)]


@pytest.mark.parametrize(
    "body",
    [
        b'{"fields": ["x"], "extra": {"rows": [["1"]]}, "rows": []}',  # the first "rows" is nested
        b'{"fields": ["x"], "rows": [["1"]], "rows": [["2"], ["3"]]}',  # the later one wins
        b'{"fields": ["x"], "x\\"rows": [["1"]], "rows": [["2"]]}',  # "rows" after an escaped quote
        b'{"fields": ["x"], "rows": "\\u0000scorer-rows"}',  # the sentinel's own text
    ],
)
def test_a_rows_key_that_is_not_the_top_level_one_is_never_taken_for_it(body):
    with cut_into_pieces_of(10**9):
        whole = outcome(ScoreRequest, body)
    for chunk in (1, 3, 8):
        with cut_into_pieces_of(chunk):
            assert outcome(ScoreRequest, body) == whole


def test_a_cut_that_swallows_the_next_member_is_never_taken_for_the_rows():
    # The envelope parses around it ("rows" is the sentinel, the later member gone with the cut),
    # so the rows' bytes must prove to be one array: the member's colon fails every parse.
    body = b'{"fields": ["x"], "rows": [["1"]], "rows": [["2"], ["3"]]}'
    split = split_rows(body)
    assert split is not None and b'"rows":' in split.rows
    for chunk in (1, 3, 8, 10**6):
        with mock.patch.object(rows_array, "PARSE_CHUNK_BYTES", chunk):
            assert parse_pieces(split.rows) is None


def test_a_trailing_comma_is_malformed_json_however_the_rows_are_cut():
    body = b'{"fields": ["x"], "rows": [["1"], ["2"],]}'
    with cut_into_pieces_of(4), pytest.raises(InvalidRequest, match="malformed JSON"):
        parse_request(ScoreRequest, body)
