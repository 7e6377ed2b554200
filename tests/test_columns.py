from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.errors import InvalidRequest
from scorer_core.schema import DataType, Field
from scorer_core.wire.cells import (
    DEFAULT_MISSING_VALUES,
    FEW_CELLS,
    build_frame,
    convert_column,
    format_column,
)


def col(values, data_type, missing=None):
    return convert_column(values, Field("c", data_type), missing)


def test_numeric_strings_become_float64():
    out = col(["1.5", "-2", "1e3"], DataType.FLOAT64)
    assert out.dtype == np.float64 and out.tolist() == [1.5, -2.0, 1000.0]


def test_float32_columns_are_float32():
    assert col(["0.1"], DataType.FLOAT32).dtype == np.float32


@pytest.mark.parametrize("token", sorted(DEFAULT_MISSING_VALUES))
def test_missing_tokens_are_nan_in_numeric_columns(token):
    out = col(["1", token], DataType.FLOAT64)
    assert out[0] == 1.0 and np.isnan(out[1])


def test_json_null_and_numbers_are_accepted():
    out = col([None, 2, 2.5, True], DataType.FLOAT64)
    assert np.isnan(out[0]) and out[1:].tolist() == [2.0, 2.5, 1.0]


def test_true_false_sent_to_a_float_column_mean_one_and_zero():
    assert col(["true", "FALSE"], DataType.FLOAT64).tolist() == [1.0, 0.0]


def test_unparsable_number_names_row_and_field():
    with pytest.raises(InvalidRequest) as excinfo:
        convert_column(["1", "2", "abc"], Field("age", DataType.FLOAT64))
    assert str(excinfo.value) == "Row 2, field 'age': cannot parse 'abc' as Float64"


def test_integers_keep_int64_precision():
    big = 2**62 + 1
    assert col([str(big), big], DataType.INT64).tolist() == [big, big]


def test_integral_float_strings_are_accepted_for_int_columns():
    assert col(["3.0", "4"], DataType.INT32).tolist() == [3, 4]


def test_fractional_value_in_int_column_is_rejected():
    with pytest.raises(
        InvalidRequest, match=r"Row 0, field 'c': cannot parse '3.5' as Int64 \(it has a fractional part\)"
    ):
        col(["3.5"], DataType.INT64)


@pytest.mark.parametrize(
    "cells", [[3.5], [4, 3.5], [3.5, None]], ids=["alone", "after-an-integer", "with-a-missing"]
)
def test_a_fractional_json_number_in_an_int_column_is_rejected_as_its_string_is(cells):
    # int(3.5) is 3: a JSON number took that shortcut and was scored as 3, where "3.5" was a 400.
    with pytest.raises(InvalidRequest, match=r"cannot parse 3\.5 as Int64 \(it has a fractional part\)"):
        col(cells, DataType.INT64)


def test_int32_range_is_checked():
    with pytest.raises(InvalidRequest, match="out of range for Int32"):
        col([str(2**31)], DataType.INT32)


def test_int_column_with_missing_becomes_float_nan_like_pandas():
    out = col(["1", ""], DataType.INT64)
    assert out.dtype == np.float64 and out[0] == 1 and np.isnan(out[1])


def test_bool_tokens():
    assert col(["true", "False", "1", "0", True], DataType.BOOL).tolist() == [True, False, True, False, True]


def test_bool_with_missing_is_object_with_none():
    out = col(["true", ""], DataType.BOOL)
    assert out.dtype == object and out.tolist() == [True, None]


def test_bad_bool_is_rejected():
    with pytest.raises(InvalidRequest, match="expected true or false"):
        col(["maybe"], DataType.BOOL)


def test_strings_keep_text_and_only_empty_is_missing_by_default():
    assert col(["a", "", "unknown", "NA", None], DataType.STR).tolist() == ["a", None, "unknown", "NA", None]


def test_runtime_missing_values_apply_to_string_columns_too():
    assert col(["a", "NA"], DataType.STR, frozenset({"NA"})).tolist() == ["a", None]


def test_object_cells_in_a_string_column_are_rejected():
    with pytest.raises(InvalidRequest, match="Row 0, field 'c'"):
        col([{"a": 1}], DataType.STR)


def test_times_parse_iso_8601_and_normalise_to_utc():
    out = col(["2018-01-01", "2018-01-01T10:00:00+02:00", ""], DataType.TIME64)
    assert out[0] == np.datetime64("2018-01-01T00:00:00")
    assert out[1] == np.datetime64("2018-01-01T08:00:00")
    assert np.isnat(out[2])


def test_bad_time_is_rejected_with_the_expected_format():
    with pytest.raises(InvalidRequest, match="expected ISO 8601"):
        col(["01/02/2020"], DataType.TIME64)


def test_build_frame_takes_columns_by_name_and_ignores_extras():
    frame = build_frame(
        ["id", "b", "a"],
        [["r1", "2", "x"], ["r2", "3", "y"]],
        [Field("a", DataType.STR), Field("b", DataType.INT64)],
    )
    assert frame.columns == ["a", "b"] and frame.num_rows == 2
    assert frame["a"].tolist() == ["x", "y"] and frame["b"].tolist() == [2, 3]


def test_build_frame_with_no_rows_has_typed_empty_columns():
    frame = build_frame(["a"], [], [Field("a", DataType.FLOAT64)])
    assert frame.num_rows == 0 and frame["a"].dtype == np.float64


def test_format_column_writes_cells_like_h2os_java_scorer():
    assert format_column(np.array([1.5, np.nan, np.inf, -np.inf])) == ["1.5", "NaN", "Infinity", "-Infinity"]
    assert format_column(np.array([0.1], dtype=np.float32)) == ["0.1"]
    assert format_column(np.array([3, 4])) == ["3", "4"]
    assert format_column(np.array([True, False])) == ["true", "false"]
    assert format_column(np.array(["a", None, 1.5], dtype=object)) == ["a", "", "1.5"]


_DOUBLES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.1, 1e16, 1e15, 1e-4, 1e-5, 5e-324, -0.0, 1e22, 9007199254740993.0, 123456789012345.0]
)


def _few_and_many(few: np.ndarray) -> tuple[list[str], list[str]]:
    """``few`` written alone, and the same cells written at the head of a column past
    FEW_CELLS, which takes numpy's path."""
    many = np.concatenate([few] * (FEW_CELLS // len(few) + 1))
    assert len(many) > FEW_CELLS
    return format_column(few), format_column(many)[: len(few)]


@settings(max_examples=300, deadline=None)
@given(st.lists(_DOUBLES, min_size=1, max_size=FEW_CELLS))
def test_a_few_doubles_are_written_as_numpy_writes_many(values):
    alone, among_many = _few_and_many(np.array(values, dtype=np.float64))
    assert alone == among_many


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["int64", "uint64", "int32", "uint8"]).flatmap(
        lambda dtype: st.tuples(
            st.just(dtype),
            st.lists(
                st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)),
                min_size=1,
                max_size=FEW_CELLS,
            ),
        )
    )
)
def test_a_few_integers_are_written_as_numpy_writes_many(typed):
    dtype, values = typed
    alone, among_many = _few_and_many(np.array(values, dtype=dtype))
    assert alone == among_many


@pytest.mark.parametrize("cell", ["1,2", "[1]", '"1"', "{}", "1 2", "0x10"])
def test_cells_that_are_not_one_number_are_rejected_not_smuggled(cell):
    with pytest.raises(InvalidRequest, match="Row 1, field 'c'"):
        col(["5", cell], DataType.FLOAT64)


def test_large_numeric_columns_parse_exactly():
    values = [repr(v) for v in (np.random.default_rng(0).normal(size=5000) * 1e3).tolist()]
    assert col(values, DataType.FLOAT64).tolist() == [float(v) for v in values]
    assert col([str(i) for i in range(-2500, 2500)], DataType.INT64).tolist() == list(range(-2500, 2500))


cells = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["", "NA", "nan", "true", "False", " 2.5 ", "1e3", "Infinity", "-0"]),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=8))
def test_whole_row_parse_equals_the_column_path(rows):
    inputs = [Field("a", DataType.FLOAT64), Field("b", DataType.FLOAT32), Field("c", DataType.FLOAT64)]
    frame = build_frame(["a", "b", "c"], rows, inputs)
    for i, spec in enumerate(inputs):
        alone = convert_column([row[i] for row in rows], spec)
        assert frame[spec.name].dtype == alone.dtype
        assert np.array_equal(frame[spec.name], alone, equal_nan=True)


@pytest.mark.parametrize("cell", ["99999999999999999999", "1e20", "-9.3e18"])
def test_an_integer_beyond_int64_is_a_400_never_a_wrapped_value(cell):
    spec = Field("n", DataType.INT64)
    with pytest.raises(InvalidRequest, match=r"out of range for Int64|cannot parse"):
        convert_column([cell], spec)


def test_minus_zero_keeps_its_sign_whichever_way_the_column_is_parsed():
    # JSON reads "-0" as the integer 0, so the vectorised parse must not decide this column.
    for cells in (["-0", "1"], ["-0", "1.5"], [" -0", "2"]):
        column = convert_column(cells, Field("x", DataType.FLOAT64))
        assert np.signbit(column[0]) and column[0] == 0, cells
    assert convert_column(["-0", "3"], Field("n", DataType.INT64)).tolist() == [0, 3]


@pytest.mark.parametrize("cell", [math.inf, -math.inf, "inf", "1e999"])
def test_an_infinite_number_in_an_int_column_is_a_400_naming_it(cell):
    # A JSON number such as 1e999 parses as an infinite float: int() of it raised OverflowError,
    # which reached the client as a 500 (and, typed with a batch, failed the whole batch).
    with pytest.raises(InvalidRequest, match=r"Row 1, field 'c': cannot parse .* as Int64$"):
        col(["1", cell], DataType.INT64)
