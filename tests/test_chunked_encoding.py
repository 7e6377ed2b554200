"""Large answers are encoded in chunks: the bytes must be exactly orjson's."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.service import answers as responses
from scorer_core.service.answers import RowTable, encode
from scorer_core.wire._rows import string_rows

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.integers(-(2**60), 2**60),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=4), inner, max_size=5),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_encode_is_orjson_byte_for_byte(body):
    responses.ENCODE_CHUNK_ITEMS, saved = 3, responses.ENCODE_CHUNK_ITEMS
    try:
        assert encode(body) == orjson.dumps(body)
    finally:
        responses.ENCODE_CHUNK_ITEMS = saved


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 40), st.integers(0, 4), st.integers(1, 7))
def test_a_row_table_encodes_as_its_rows(rows, width, chunk):
    columns = [[f"{c}.{r}" for r in range(rows)] for c in range(width)]
    table = RowTable(columns, rows)
    responses.ENCODE_CHUNK_ITEMS, saved = chunk, responses.ENCODE_CHUNK_ITEMS
    try:
        assert encode({"id": "m", "score": table}) == orjson.dumps({"id": "m", "score": table.chunk(0, rows)})
    finally:
        responses.ENCODE_CHUNK_ITEMS = saved
    assert len(table.chunk(0, rows)) == rows


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.text(max_size=8), min_size=1, max_size=3), min_size=1, max_size=6), st.integers(1, 4)
)
def test_a_row_table_of_any_text_is_written_natively_as_orjson_writes_it(rows, chunk):
    # Any text: quotes, backslashes, every control character, non-ASCII, lone surrogates.
    width = min(len(row) for row in rows)
    columns = [[row[c] for row in rows] for c in range(width)]
    table = RowTable(columns, len(rows))
    responses.ENCODE_CHUNK_ITEMS, saved = chunk, responses.ENCODE_CHUNK_ITEMS
    try:
        try:
            expected = orjson.dumps({"score": table.chunk(0, len(rows))})
        except orjson.JSONEncodeError:  # a lone surrogate: not UTF-8, refused either way
            with pytest.raises(orjson.JSONEncodeError):
                encode({"score": table})
            return
        assert encode({"score": table}) == expected
    finally:
        responses.ENCODE_CHUNK_ITEMS = saved


def test_the_native_writer_covers_every_control_character_and_refuses_what_is_no_text():
    texts = [chr(c) for c in range(0x80)] + ["é", "\u2028", "东", "😀", 'say "hi"', "a\\b"]
    assert string_rows([texts], 0, len(texts)) == orjson.dumps([[t] for t in texts])[1:-1]
    assert string_rows([["a", "b"], ["c", "d"]], 1, 2) == b'["b","d"]'
    assert string_rows([["a"]], 0, 0) == b""
    assert string_rows([["\ud800"]], 0, 1) is None
    assert string_rows([[1]], 0, 1) is None
    with pytest.raises(ValueError, match="at least stop"):
        string_rows([["a"]], 0, 2)
    with pytest.raises(ValueError, match="one column or more"):
        string_rows([], 0, 0)
