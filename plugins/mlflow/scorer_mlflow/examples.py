"""The model's saved input example as ``/model/sample_request``'s row.

A row of real values tells a client more than the per-type placeholders (``"0"``, ``"text"``),
and it is one the model was shown to accept when it was saved. A field the example lacks, or a
missing value in it, takes the placeholder, so the row still passes the request checks.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scorer_core import DataType, Field

__all__ = ["example_cells"]


def example_cells(example: Any, fields: Sequence[Field]) -> tuple[str, ...] | None:
    """The example's first row as request cells in the order of ``fields``, or None when the
    example's layout is not one that maps onto them (a DataFrame or dict of columns by name, a
    2-D array or list of rows by position)."""
    values = _first_row(example, [f.name for f in fields])
    if values is None:
        return None
    return tuple(_cell(value, field.data_type) for value, field in zip(values, fields, strict=True))


def _first_row(example: Any, names: list[str]) -> list[Any] | None:
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        if example.empty:
            return None
        columns = [str(c) for c in example.columns]
        if all(name in columns for name in names):
            return [example.iloc[0, columns.index(name)] for name in names]
        return list(example.iloc[0]) if len(columns) == len(names) else None
    if isinstance(example, Mapping):
        if not all(name in example for name in names):
            return None
        return [_first(example[name]) for name in names]
    try:
        rows = np.asarray(example, dtype=object)
    except Exception:  # ragged lists and the like: no row to show
        return None
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != len(names):
        return None
    return list(rows[0])


def _first(column: Any) -> Any:
    if isinstance(column, str | bytes) or np.ndim(column) == 0:
        return column
    return next(iter(column), None)


def _cell(value: Any, data_type: DataType) -> str:
    """``value`` as the cell the server would parse back to it; the type's placeholder when it is
    missing or has no such cell (bytes, a non-finite number)."""
    import pandas as pd

    if isinstance(value, bytes) or value is None or (np.ndim(value) == 0 and _missing(value)):
        return data_type.example
    if isinstance(value, np.datetime64 | datetime.date):
        return str(pd.Timestamp(value).isoformat())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else data_type.example
    return str(value)


def _missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
