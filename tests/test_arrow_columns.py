"""``wire.columns``: columns from files typed as the HTTP API types the same cells. Arrow's
native parse of a float column is taken only when it gives exactly what the Python path gives
(``convert_column``, the HTTP API's own function); everything else falls back to that path."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.errors import InvalidRequest
from scorer_core.schema import DataType, Field
from scorer_core.wire.cells import build_frame, convert_column
from scorer_core.wire.columns import ColumnRows, cell_of, cells, frame_of_columns, native_floats, native_texts

FLOATS = (DataType.FLOAT32, DataType.FLOAT64)

#: Cells near the edges of what float() and Arrow each read.
TRICKY = [
    "", " ", "1", "-0", "+1.5", ".5", "5.", "1e3", "1E-3", "1e", "e3", "1_000", " 2", "3 ",
    "nan", "NaN", "NAN", "nan(123)", "inf", "-inf", "Infinity", "-Infinity", "infinity", "+inf",
    "0x1p3", "1d5", "١٢", "NA", "None", "null", "?", "unknown", "1e400", "-1e400", "1e-400",
    "3.4028235e38", "3.4028236e38", "0.1", "123456789012345678901234567890", "--1", "1..2",
]  # fmt: skip

cell = st.one_of(
    st.sampled_from(TRICKY),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(width=32).map(lambda f: format(f, ".9g")),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(alphabet="0123456789.eE+-_ naNifINFty", max_size=8),
)


def python_path(values: list[str], data_type: DataType) -> np.ndarray | str:
    try:
        return convert_column(values, Field("x", data_type))
    except InvalidRequest as exc:
        return exc.detail


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit, NaNs and signed zeros included."""
    both_nan = np.isnan(a) & np.isnan(b)
    return a.dtype == b.dtype and bool(np.all(((a == b) & (np.signbit(a) == np.signbit(b))) | both_nan))


@settings(max_examples=400, deadline=None)
@given(st.lists(cell, min_size=1, max_size=12), st.sampled_from(FLOATS))
def test_a_native_parse_is_taken_only_when_it_is_the_python_paths_answer(values, data_type):
    expected = python_path(values, data_type)
    if isinstance(expected, str):
        with pytest.raises(InvalidRequest) as refused:
            frame_of_columns(["x"], [pa.array(values, pa.string())], [Field("x", data_type)])
        assert refused.value.detail == expected  # the same message, row and field named
        return
    frame = frame_of_columns(["x"], [pa.array(values, pa.string())], [Field("x", data_type)])
    assert frame is not None and same(frame["x"], expected)


def test_the_tricky_cells_one_by_one():
    taken = []
    for value in TRICKY:
        native = native_floats(pa.array([value], pa.string()))
        expected = python_path([value], DataType.FLOAT64)
        if native is not None:
            taken.append(value)
            assert not isinstance(expected, str), f"Arrow read {value!r}, which the HTTP API refuses"
            assert same(native, expected), value
    # The common spellings do take the native path (else it would be dead code).
    assert {"1", "-0", "1e3", ".5", "5.", "0.1", "", "inf", "-Infinity"} <= set(taken)
    # What only Python reads, and C's nan(chars), never do.
    assert not {" 2", "1_000", "١٢", "nan(123)", "NA", "nan"} & set(taken)


def test_typed_parquet_values_are_read_as_the_cells_a_client_would_send():
    values = [0.1, -0.0, math.inf, None, 1e-310, 2.5e300]
    native = native_floats(pa.array(values, pa.float64()))
    expected = python_path([cell_of(v) for v in values], DataType.FLOAT64)
    assert native is not None and same(native, expected)
    ints = [2**53 + 1, -7, None, 0]
    native = native_floats(pa.array(ints, pa.int64()))
    expected = python_path([cell_of(v) for v in ints], DataType.FLOAT32)
    assert native is not None and same(native.astype(np.float32), expected)
    assert native_floats(pa.array([True, False])) is None  # "true" is no float: the Python path says so


def test_nulls_are_empty_cells_and_other_columns_take_the_http_apis_path():
    inputs = [Field("x", DataType.FLOAT64), Field("n", DataType.INT64), Field("s", DataType.STR)]
    columns = [pa.array(["1.5", None, ""]), pa.array(["1", "", "3"]), pa.array(["a", None, "c"])]
    frame = frame_of_columns(["x", "n", "s"], columns, inputs)
    expected = build_frame(["x", "n", "s"], [["1.5", "1", "a"], ["", "", ""], ["", "3", "c"]], inputs)
    assert frame is not None
    for name in ("x", "n", "s"):
        assert np.array_equal(frame[name], expected[name], equal_nan=frame[name].dtype.kind == "f")
    assert (
        frame_of_columns(["x"], [pa.array(["1"])], inputs) is None
    )  # a missing input: the request code says so


def test_column_rows_show_columns_as_rows_and_make_strings_only_when_read():
    rows = ColumnRows([pa.array(["a", "b", "c"]), pa.array([1.5, None, 3.0]), ["x", "y", "z"]])
    assert len(rows) == 3 and [len(r) for r in rows] == [3, 3, 3]
    assert list(rows[1]) == ["b", "", "y"] and rows[-1][0] == "c"
    half = rows[1:]
    assert isinstance(half, ColumnRows) and half.as_lists() == [["b", "", "y"], ["c", "3.0", "z"]]
    assert rows._cells.keys() == {0, 1, 2}  # read above; a fresh view has made none
    assert ColumnRows([pa.array(["q"])])._cells == {}
    assert cells(pa.array(["a", None])) == ["a", ""]
    with pytest.raises(IndexError):
        rows[3]


texts = st.one_of(st.sampled_from(["", "NA", " ", "Oslo", "Zürich", "東京", "-"]), st.text(max_size=4))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(texts, st.none()), min_size=1, max_size=12),
    st.sampled_from([None, frozenset({"NA", "-"}), frozenset()]),
    st.booleans(),
)
def test_a_string_column_is_typed_by_its_distinct_texts_as_the_python_path_types_its_cells(
    values, missing, large
):
    column = pa.array(values, pa.large_string() if large else pa.string())
    expected = convert_column(cells(column), Field("s", DataType.STR), missing)
    typed = frame_of_columns(["s"], [column], [Field("s", DataType.STR)], missing)
    assert typed is not None
    got = typed["s"]
    assert got.dtype == expected.dtype == object
    assert list(got) == list(expected) and [type(v) for v in got] == [type(v) for v in expected]


def test_a_repeated_text_is_one_object_and_non_text_columns_take_the_python_path():
    typed = native_texts(pa.array(["a", "b", "a", None, ""]), frozenset({""}))
    assert typed is not None
    assert list(typed) == ["a", "b", "a", None, None]
    assert typed[0] is typed[2]
    assert native_texts(pa.array([1, 2]), frozenset()) is None
    assert native_texts(["a", "b"], frozenset()) is None


def test_a_chunked_column_is_typed_as_its_chunks_together():
    chunked = pa.chunked_array([pa.array(["a", None]), pa.array(["a", "b"])])
    typed = native_texts(chunked, frozenset({""}))
    assert typed is not None and list(typed) == ["a", None, "a", "b"]
