"""Columns of cells as files hold them (Arrow arrays), typed by the contract's own rules without
a Python object per cell where that gives the same values.

Batch scoring reads columns, and a request is rows: going from one to the other and back cost
more than the model. ``ColumnRows`` shows columns to the request code as the rows it expects,
making a Python string only for a cell that code reads; ``frame_of_columns`` types each model
input from its column with ``convert_column``, the function the HTTP API types a column with,
except for a column of decimal strings bound for a float input, which Arrow parses in C++ when
that gives exactly what ``float()`` gives (else the column takes the Python path, errors
included), and a column of strings bound for a string input, whose distinct texts Arrow finds
so that each is made once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import orjson

from scorer_core.frame import Frame
from scorer_core.schema import DataType, Field
from scorer_core.wire.cells import (
    DEFAULT_MISSING_VALUES,
    convert_column,
    format_scalar,
    missing_tokens,
    texts_by_codes,
)

__all__ = ["Column", "ColumnRows", "cell_of", "cells", "frame_of_columns", "native_floats", "native_texts"]

#: A column of a chunk: the contract's string cells, or an Arrow array of them (or of values
#: written as a client would write them, ``format_scalar``).
Column = Any


def cells(column: Column) -> list[str]:
    """The column's cells as the contract's strings."""
    if isinstance(column, list):
        return column
    import pyarrow as pa

    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if text and not column.null_count:
        return column.to_pylist()  # type: ignore[no-any-return]
    return [cell_of(v) for v in column.to_pylist()]


def cell_of(value: Any) -> str:
    """A typed value as a client of the HTTP API would send it: as the server itself writes
    cells (``format_scalar``), nested values as JSON."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return format_scalar(value)


class _Row(Sequence[str]):
    __slots__ = ("_index", "_rows")

    def __init__(self, rows: ColumnRows, index: int) -> None:
        self._rows = rows
        self._index = index

    def __len__(self) -> int:
        return len(self._rows.columns)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self._rows.cells(j)[self._index] for j in range(len(self))[i]]
        return self._rows.cells(i)[self._index]


class ColumnRows(Sequence[Sequence[str]]):
    """Columns seen as rows: ``rows[r][c]`` is column ``c``'s cell ``r``, a column's Python
    strings made the first time one of its cells is read."""

    def __init__(self, columns: Sequence[Column], num_rows: int | None = None) -> None:
        self.columns = list(columns)
        self.num_rows = num_rows if num_rows is not None else (len(self.columns[0]) if self.columns else 0)
        self._cells: dict[int, list[str]] = {}

    def cells(self, column: int) -> list[str]:
        found = self._cells.get(column)
        if found is None:
            found = self._cells[column] = cells(self.columns[column])
        return found

    def __len__(self) -> int:
        return self.num_rows

    @overload
    def __getitem__(self, i: int) -> Sequence[str]: ...
    @overload
    def __getitem__(self, i: slice) -> ColumnRows: ...
    def __getitem__(self, i: int | slice) -> Sequence[str] | ColumnRows:
        if isinstance(i, slice):
            start, stop, step = i.indices(self.num_rows)
            if step != 1:
                raise ValueError("ColumnRows slices by ranges only")
            return ColumnRows([c[start:stop] for c in self.columns], max(0, stop - start))
        if not -self.num_rows <= i < self.num_rows:
            raise IndexError(i)
        return _Row(self, i % self.num_rows)

    def __iter__(self) -> Iterator[Sequence[str]]:
        return (_Row(self, r) for r in range(self.num_rows))

    def as_lists(self) -> list[list[str]]:
        """Every row as a list of strings (for the code that validates request bodies)."""
        return list(map(list, zip(*(self.cells(c) for c in range(len(self.columns))), strict=True)))


_NUMPY_FLOATS = {DataType.FLOAT32: np.float32, DataType.FLOAT64: np.float64}


def frame_of_columns(
    fields: Sequence[str],
    columns: Sequence[Column],
    inputs: Sequence[Field],
    missing_values: frozenset[str] | None = None,
) -> Frame | None:
    """The model's typed inputs from a chunk's columns, as ``build_frame`` would type the same
    cells; ``None`` when a model input has no column (the request code then says so)."""
    position = {name: i for i, name in enumerate(fields)}
    if any(spec.name not in position for spec in inputs):
        return None
    num_rows = len(columns[0]) if columns else 0
    typed: dict[str, np.ndarray] = {}
    for spec in inputs:
        column = columns[position[spec.name]]
        native = None
        if spec.data_type in (DataType.FLOAT32, DataType.FLOAT64) and missing_values is None:
            native = native_floats(column)
        elif spec.data_type is DataType.STR:
            typed_texts = native_texts(column, missing_tokens(DataType.STR, missing_values))
            if typed_texts is not None:
                typed[spec.name] = typed_texts
                continue
        if native is not None:
            with np.errstate(over="ignore"):  # beyond float32's range becomes inf, as elsewhere
                typed[spec.name] = native.astype(_NUMPY_FLOATS[spec.data_type])
        else:
            typed[spec.name] = convert_column(cells(column), spec, missing_values)
    return Frame(typed, num_rows)


def native_texts(column: Column, missing: frozenset[str]) -> np.ndarray | None:
    """A column of strings as the contract types a string input (a missing-value token None,
    every other text itself), each distinct text made once by Arrow's dictionary encoding; a
    null is the empty cell, as ``cells`` writes it. ``None`` for a column of anything else."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, list) or not (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        return None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(pc.fill_null(column, "") if column.null_count else column)
    return texts_by_codes(
        encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False), missing
    )


def native_floats(column: Column) -> np.ndarray | None:
    """A column of strings parsed as doubles by Arrow, when that is what the contract's float
    rule gives (``float()`` of each cell, an empty cell missing), else ``None``.

    Arrow accepts a subset of what ``float()`` accepts (no spaces, no underscores, no
    non-ASCII digits: those refuse the whole column, which then takes the Python path) and
    rounds alike (correctly). The one thing it reads that ``float()`` does not is C's
    ``nan(chars)``: any NaN that did not come from an empty cell also refuses the column,
    since NaN also stands for the missing-value tokens the Python path knows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, list):
        return None
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        # Typed values (Parquet's) stand for the cells format_scalar writes of them: a double
        # written with repr and read with float() is the same double, an integer read with
        # float() is rounded as numpy rounds it, and a null is the empty cell, missing.
        # (numpy's conversion rounds to nearest, as float() of the integer's digits does.)
        return column.to_numpy(zero_copy_only=False).astype(np.float64)  # type: ignore[no-any-return]
    if not pa.types.is_string(column.type):
        return None
    if "" not in DEFAULT_MISSING_VALUES:  # pragma: no cover - the contract's default list has it
        return None
    empty = pc.fill_null(pc.equal(column, ""), True)
    missing = int(pc.sum(empty).as_py() or 0)
    try:
        parsed = pc.cast(pc.if_else(empty, pa.scalar(None, pa.string()), column), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    values = parsed.to_numpy(zero_copy_only=False)
    if int(np.count_nonzero(np.isnan(values))) != missing:
        return None
    return values  # type: ignore[no-any-return]
