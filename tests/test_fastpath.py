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
from scorer_core.wire.fastpath import FAST_PATH_MIN_BYTES, native_frame


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
    fast = native_frame(body, served(INPUTS))
    assert fast is not None
    general = build_frame(fields, rows, INPUTS)
    for name in ("a", "n", "f"):
        assert fast[1][name].dtype == general[name].dtype
        assert np.array_equal(fast[1][name], general[name])


@pytest.mark.parametrize(
    "cell",
    ["abc", "1.5.2", "1,2", "[1]", "01", "Infinity", None, "a\\b", "tab\there", 5],
)
def test_any_doubtful_cell_sends_the_request_down_the_general_path(cell):
    rows = many(["1.5", "2", "3"])
    rows[4000][0] = cell
    assert native_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None


def assert_same_as_general(body, fields, rows, inputs, missing_values=None):
    fast = native_frame(body, served(inputs), missing_values)
    assert fast is not None, "this body should take the native path"
    general = build_frame(fields, rows, inputs, missing_values)
    for spec in inputs:
        got, want = fast[1][spec.name], general[spec.name]
        assert got.dtype == want.dtype, spec.name
        assert [repr(v) for v in got] == [repr(v) for v in want], spec.name  # -0.0, None and NaN too


@pytest.mark.parametrize("cell", ["NaN", "", "NA", " NA ", "null", "?"])
def test_missing_value_tokens_in_number_columns_are_typed_natively_as_the_general_path_types_them(cell):
    rows = many(["1.5", "2", "3"])
    rows[4000] = [cell, cell, cell]
    rows[10] = ["-0", "-0", "-0"]
    assert_same_as_general(body_of(["a", "n", "f"], rows), ["a", "n", "f"], rows, INPUTS)


def test_a_models_own_missing_values_replace_the_defaults_on_the_native_path():
    rows = many(["1.5", "2", "3"])
    rows[5] = ["-", "-", "-"]
    body = body_of(["a", "n", "f"], rows)
    assert_same_as_general(body, ["a", "n", "f"], rows, INPUTS, frozenset({"-"}))
    rows[6] = ["NA", "2", "3"]  # a default token, not one of this model's: the general path's 400
    assert native_frame(body_of(["a", "n", "f"], rows), served(INPUTS), frozenset({"-"})) is None


def test_fractional_value_in_an_int_column_takes_the_general_path():
    rows = many(["1.5", "2.5", "3"])
    assert native_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None
    rows[3] = ["1.5", "", "3"]  # with a missing cell too: the general path names the fraction
    assert native_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None


def test_out_of_range_and_inexact_integers_take_the_general_path():
    narrow = [Field("a", DataType.FLOAT64), Field("n", DataType.INT32)]
    rows = many(["1.5", "2"])
    rows[9] = ["1.5", "2147483648"]
    assert native_frame(body_of(["a", "n"], rows), served(narrow)) is None
    rows[9] = ["1.5", "9007199254740993"]  # 2**53 + 1: a double would round it
    assert native_frame(body_of(["a", "n"], rows), served(INPUTS[:2])) is None


def test_ragged_rows_and_copied_fields_take_the_general_path():
    rows = many(["1.5", "2", "3"])
    rows[7] = ["1.5", "2"]
    assert native_frame(body_of(["a", "n", "f"], rows), served(INPUTS)) is None
    good = many(["1.5", "2", "3"])
    assert native_frame(body_of(["a", "n", "f"], good, includeFieldsInOutput=["a"]), served(INPUTS)) is None


MIXED = [
    Field("city", DataType.STR),
    Field("age", DataType.INT64),
    Field("income", DataType.FLOAT64),
    Field("note", DataType.STR),
]


def test_string_columns_are_typed_natively_each_distinct_text_made_once():
    cities = ["Zürich", "Oslo", "", "NA", "12", "Oslo ", "東京"]
    rows = [[cities[i % len(cities)], str(i % 90), f"{i * 1.25}", f"note {i}"] for i in range(6000)]
    rows[3][1] = ""  # an integer column with a missing cell becomes float64
    fields = ["city", "age", "income", "note", "unused"]
    rows = [[*row, "whatever"] for row in rows]
    body = body_of(fields, rows)
    assert_same_as_general(body, fields, rows, MIXED)
    city = native_frame(body, served(MIXED))[1]["city"]
    assert city[2] is None and city[3] == "NA", "only the empty string is missing in a string column"
    assert city[1] is city[8], "a repeated text is one object"


@pytest.mark.parametrize(
    "cell",
    [None, 7, 1.5, True, ["a"], {"a": 1}, 'say "hi"', "back\\slash", "line\nbreak"],
)
def test_a_string_cell_the_decoder_cannot_copy_as_it_lies_takes_the_general_path(cell):
    rows = [["Oslo", "30", "1.5", "x"] for _ in range(6000)]
    rows[100][0] = cell
    assert native_frame(body_of(["city", "age", "income", "note"], rows), served(MIXED)) is None


def test_a_body_that_is_not_utf8_takes_the_general_path():
    body = body_of(["city", "age", "income", "note"], [["Oslo", "30", "1.5", "x"] for _ in range(6000)])
    broken = body.replace(b'"Oslo"', b'"Osl\xff"', 1)
    assert native_frame(broken, served(MIXED)) is None
    unused = body.replace(b'"x"]', b'"\xc3"]', 1)  # even in a cell of a field the model does not use
    assert native_frame(unused, served(MIXED)) is None


def test_boolean_and_time_inputs_never_take_the_native_path():
    rows = many(["1.5", "true"])
    for other in (DataType.BOOL, DataType.TIME64):
        schema = served([Field("a", DataType.FLOAT64), Field("s", other)])
        assert native_frame(body_of(["a", "s"], rows), schema) is None


def test_a_second_rows_key_is_left_to_the_general_parser():
    rows = json.dumps(many(["1.5", "2", "3"])).encode()
    body = b'{"fields": ["a", "n", "f"], "rows": ' + rows + b', "rows": [["9", "9", "9"]]}'
    assert native_frame(body, served(INPUTS)) is None


#: The kind of list a Driverless AI pipeline declares: numbers among the tokens.
OWN_MISSING = frozenset(
    {"", "?", "None", "nan", "NA", "N/A", "unknown", "inf", "-inf", "-1", "1.7976931348623157e+308"}
)


@pytest.mark.parametrize(
    "cells",
    [["inf"], ["1.7976931348623157e+308", "NA"], ["-1", "NA"], [" -1"]],
    ids=["numpy-reads-inf", "a-number-token-beside-a-gap", "minus-one-beside-a-gap", "blank-around-a-token"],
)
def test_a_models_own_tokens_beside_a_cell_that_is_no_number_leave_the_column_to_the_general_path(cells):
    # The general path reads such a column whole with numpy (tokens unseen) or cell by cell (a
    # number among the tokens missing too): which one, only it can say.
    rows = many(["1.5", "2", "3"])
    for i, cell in enumerate(cells):
        rows[5 + i] = [cell, "2", "3"]
    assert native_frame(body_of(["a", "n", "f"], rows), served(INPUTS), OWN_MISSING) is None
    rows = many(["1.5", "-1", "3"])  # a token that is a number, in a column of numbers only
    assert_same_as_general(body_of(["a", "n", "f"], rows), ["a", "n", "f"], rows, INPUTS, OWN_MISSING)
