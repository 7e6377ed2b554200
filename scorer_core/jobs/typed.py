"""A batch job's answer in the types the model declares, for the output formats that carry
types (Parquet, JSON Lines); CSV and the HTTP API keep the contract's string cells.

The types come from the model's schema, never from the values of a chunk: an integer output
that holds a missing value (a float NaN from the model) is an integer column with a null, not a
float column in one part-file and an integer one in the next. A value the declared type cannot
hold (``1.5`` in an Int32 output, a string in a Float64 one) is that row's model failure, as a
row-count mismatch is, rather than a silently truncated or retyped column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scorer_core.schema import DataType, Field
from scorer_core.wire.cells import format_column
from scorer_core.wire.columns import Column, cell_of

__all__ = ["CONTRIBUTION_TYPE", "arrow_type", "input_column", "typed_column", "typed_outputs"]

#: Shapley contributions are floats, whatever the model's outputs are.
CONTRIBUTION_TYPE = DataType.FLOAT64


def arrow_type(data_type: DataType) -> Any:
    """The Arrow type a column of ``data_type`` is written as. Times are microseconds without
    a zone, as Spark's ``TimestampNTZType`` holds them, so that both engines write one type."""
    import pyarrow as pa

    return {
        DataType.FLOAT64: pa.float64(),
        DataType.FLOAT32: pa.float32(),
        DataType.INT32: pa.int32(),
        DataType.INT64: pa.int64(),
        DataType.BOOL: pa.bool_(),
        DataType.STR: pa.string(),
        DataType.TIME64: pa.timestamp("us"),
    }[data_type]


def typed_outputs(outputs: Sequence[Field]) -> dict[str, DataType]:
    """Each output's declared type, by name: the job's output schema, chosen once."""
    return {spec.name: spec.data_type for spec in outputs}


def input_column(column: Column) -> Any:
    """An input column copied to the output (the id, ``--keep-columns``) in the input's own
    type: a Parquet column as the file types it, dictionaries decoded (Spark reads them as their
    values); the cells of CSV and JSON Lines, which declare no types, as strings."""
    import pyarrow as pa

    if isinstance(column, list):
        return pa.array(column, pa.string())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column


def typed_column(values: np.ndarray, data_type: DataType) -> Any:
    """A model's output column as an Arrow array of ``data_type``. ``ValueError`` says why the
    values cannot be of that type."""
    if data_type is DataType.STR:
        return _strings(values)
    if data_type is DataType.TIME64:
        return _times(values)
    if data_type is DataType.BOOL:
        return _booleans(values)
    return _numbers(values, data_type)


def _numbers(values: np.ndarray, data_type: DataType) -> Any:
    import pyarrow as pa

    target = arrow_type(data_type)
    floats = data_type in (DataType.FLOAT32, DataType.FLOAT64)
    if values.dtype.kind in "iuf":
        # For an integer output, NaN is the missing value (a NumPy integer column cannot hold
        # one); for a float output it is a value, kept.
        array = pa.array(values, from_pandas=not floats)
    elif values.dtype.kind == "O":
        array = _inferred(values, from_pandas=not floats)
    else:
        raise ValueError(f"it holds {_kind(values)}, not numbers")
    if not any(check(array.type) for check in (pa.types.is_integer, pa.types.is_floating, pa.types.is_null)):
        raise ValueError(f"it holds {array.type} values, not numbers")
    typed = _cast(array, target)
    if data_type is DataType.FLOAT32 and pa.types.is_floating(array.type):
        import pyarrow.compute as pc

        # Arrow narrows a double past float32's range to infinity without a word.
        overflow = pc.and_(pc.is_inf(typed), pc.is_finite(array))
        if pc.any(overflow).as_py():
            first = pc.filter(array, overflow)[0].as_py()
            raise ValueError(f"{first!r} is beyond Float32's range")
    return typed


def _booleans(values: np.ndarray) -> Any:
    import pyarrow as pa

    kind = values.dtype.kind
    if kind == "b":
        return pa.array(values)
    array = pa.array(values, from_pandas=True) if kind in "iuf" else _inferred(values, from_pandas=True)
    if pa.types.is_boolean(array.type) or pa.types.is_null(array.type):
        return _cast(array, pa.bool_())
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        import pyarrow.compute as pc

        # 0 and 1, as classifiers of a yes/no label answer; anything else is no boolean.
        if pc.all(pc.is_in(array.drop_null(), value_set=pa.array([0, 1], array.type))).as_py():
            return _cast(array, pa.bool_())
        raise ValueError("it holds numbers other than 0 and 1, not booleans")
    raise ValueError(f"it holds {array.type} values, not booleans")


def _strings(values: np.ndarray) -> Any:
    """The HTTP API's cells, with pandas' missing values (``None``, NaN, NaT) as nulls."""
    import pyarrow as pa

    kind = values.dtype.kind
    if kind == "O":
        cells = [None if _missing(v) else v if isinstance(v, str) else cell_of(v) for v in values.tolist()]
        return pa.array(cells, pa.string())
    texts: list[str | None] = list(format_column(values))
    if kind in "fM":
        for row in np.flatnonzero(np.isnan(values) if kind == "f" else np.isnat(values)).tolist():
            texts[row] = None
    return pa.array(texts, pa.string())


def _times(values: np.ndarray) -> Any:
    import pyarrow as pa

    target = arrow_type(DataType.TIME64)
    kind = values.dtype.kind
    if kind == "M":
        # Microseconds, as Spark holds them: finer digits are cut off.
        return pa.array(values.astype("datetime64[us]"))
    if kind != "O":
        raise ValueError(f"it holds {_kind(values)}, not times")
    items = [None if _missing(v) else _time_of(v) for v in values.tolist()]
    try:
        array = pa.array(items, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"it holds values that are not times ({exc})") from None
    if not (pa.types.is_timestamp(array.type) or pa.types.is_null(array.type)):
        raise ValueError(f"it holds {array.type} values, not times")
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        array = array.cast(pa.timestamp(array.type.unit))  # the instant in UTC, as Spark writes it
    return _cast(array, target, safe=False)


def _time_of(value: Any) -> Any:
    """A time as Arrow reads it; ISO 8601 text parsed as the HTTP API's Time64 cells are not,
    since a model may answer its times as text."""
    if isinstance(value, str):
        try:
            return np.datetime64(value, "us")
        except ValueError:
            raise ValueError(f"it holds {cell_of(value)[:40]!r}, which is not an ISO 8601 time") from None
    return value


def _inferred(values: np.ndarray, *, from_pandas: bool) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values.tolist(), from_pandas=from_pandas)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"it holds values of mixed kinds ({exc})") from None


def _cast(array: Any, target: Any, *, safe: bool = True) -> Any:
    """``array`` as ``target``; a value that would be cut or overflow is refused, by Arrow's word."""
    import pyarrow as pa

    try:
        return array.cast(target, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(str(exc)) from None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):  # NaN, pandas' missing value in an object column
        return value != value
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def _kind(values: np.ndarray) -> str:
    return {"b": "booleans", "M": "times", "m": "durations", "U": "strings", "S": "bytes"}.get(
        values.dtype.kind, f"{values.dtype} values"
    )
