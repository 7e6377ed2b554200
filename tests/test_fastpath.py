"""The numeric fast path must give exactly what the general parser gives, or step aside."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.schema import DataType, Field, ModelSchema
from scorer_core.wire.cells import build_frame
from scorer_core.wire.fastpath import FAST_PATH_MIN_BYTES, numeric_frame


def served(inputs):
    """The schema the fast path reads: these inputs and one output."""
    return ModelSchema(inputs, [Field("y", DataType.FLOAT64)])


INPUTS = [Field("a", DataType.FLOAT64), Field("n", DataType.INT64), Field("f", DataType.FLOAT32)]


def body_of(fields, rows, **extra):
    body = orjson.dumps({"fields": fields, "rows": rows, **extra})
    assert len(body) >= FAST_PATH_MIN_BYTES, "make the test body large enough for the fast path"
    return body


def many(row, n=8000):
    return [list(row) for _ in range(n)]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=30, deadline=None)
@given(
    a=st.lists(finite, min_size=1, max_size=20),
    n=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20),
)
def test_fast_path_equals_the_general_path(a, n):
    size = 6000
    rows = [[repr(a[i % len(a)]), str(n[i % len(n)]), repr(a[-1 - i % len(a)]), str(i)] for i in range(size)]
    fields = ["a", "n", "f", "other"]
    body = body_of(fields, rows)
    fast = numeric_frame(body, served(INPUTS))
    assert fast is not None
    general = build_frame(fields, rows, INPUTS)
    for name in ("a", "n", "f"):
        assert fast[1][name].dtype == general[name].dtype
        assert np.array_equal(fast[1][name], general[name])


@pytest.mark.parametrize(
    "cell",
    ["abc", "NaN", "", "1.5.2", "1,2", "[1]", "01", "Infinity", None],
)
def test_any_doubtful_cell_sends_the_request_down_the_general_path(cell):
    rows = many(["1.5", "2", "3"])
    rows[4000][0] = cell
    assert numeric_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None


def test_fractional_value_in_an_int_column_takes_the_general_path():
    rows = many(["1.5", "2.5", "3"])
    assert numeric_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None


def test_ragged_rows_and_copied_fields_take_the_general_path():
    rows = many(["1.5", "2", "3"])
    rows[7] = ["1.5", "2"]
    assert numeric_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None
    good = many(["1.5", "2", "3"])
    assert numeric_frame(body_of(["a", "n", "f"], good, includeFieldsInOutput=["a"]), served(INPUTS)) is None


def test_string_model_inputs_never_take_the_fast_path():
    rows = many(["1.5", "2"])
    assert (
        numeric_frame(
            body_of(["a", "s"], rows), served([Field("a", DataType.FLOAT64), Field("s", DataType.STR)])
        )
        is None
    )


def test_a_second_rows_key_is_left_to_the_general_parser():
    rows = json.dumps(many(["1.5", "2", "3"])).encode()
    body = b'{"fields": ["a", "n", "f"], "rows": ' + rows + b', "rows": [["9", "9", "9"]]}'
    assert numeric_frame(body, served(INPUTS)) is None
