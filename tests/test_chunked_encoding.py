"""Large answers are encoded in chunks: the bytes must be exactly orjson's."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.service import answers as responses
from scorer_core.service.answers import RowTable, encode

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5) | st.integers(-(2**60), 2**60),
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
