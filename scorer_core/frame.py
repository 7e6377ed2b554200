"""Frame: the typed batch of rows a runtime scores, one numpy array per column.

A frame is what plugins see, whether its rows came from one request or from many merged ones.
Columns are plain numpy arrays, so a plugin can hand them to pandas, datatable, torch or a JVM
without the core importing any of those.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Frame"]


class Frame(Mapping[str, np.ndarray]):
    """An immutable mapping of column name to a numpy array, all of ``num_rows`` rows.

    Column dtypes follow the model schema (see ``scorer_core.wire.cells``): float64/float32 with NaN
    for missing numbers, int64/int32 (float64 with NaN when the batch holds a missing value), bool,
    object arrays of ``str`` or ``None`` for strings, and ``datetime64[ns]`` with NaT for times.
    """

    __slots__ = ("_columns", "num_rows")

    def __init__(self, columns: Mapping[str, np.ndarray], num_rows: int | None = None) -> None:
        self._columns = dict(columns)
        if num_rows is None:
            if not self._columns:
                raise ValueError("a frame without columns needs an explicit num_rows")
            num_rows = len(next(iter(self._columns.values())))
        for name, column in self._columns.items():
            if len(column) != num_rows:
                raise ValueError(f"column '{name}' has {len(column)} rows, expected {num_rows}")
        self.num_rows = num_rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:
        return f"Frame(columns={list(self._columns)}, num_rows={self.num_rows})"

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def select(self, names: Sequence[str]) -> Frame:
        """The named columns, in the given order."""
        return Frame({name: self._columns[name] for name in names}, self.num_rows)

    def slice(self, start: int, stop: int) -> Frame:
        """Rows ``start`` to ``stop`` (views, no copy)."""
        stop = min(stop, self.num_rows)
        return Frame({n: c[start:stop] for n, c in self._columns.items()}, max(stop - start, 0))

    @classmethod
    def concat(cls, frames: Sequence[Frame]) -> Frame:
        """Stack frames with the same columns; dtypes are promoted as numpy does."""
        if not frames:
            raise ValueError("cannot concatenate zero frames")
        if len(frames) == 1:
            return frames[0]
        names = frames[0].columns
        for frame in frames[1:]:
            if frame.columns != names:
                raise ValueError(f"frames have different columns: {names} and {frame.columns}")
        total = sum(f.num_rows for f in frames)
        return cls({n: _concat_column([f[n] for f in frames]) for n in names}, total)

    def to_pandas(self) -> pd.DataFrame:
        """A pandas DataFrame of the same columns (pandas is imported only when asked for)."""
        import pandas as pd

        return pd.DataFrame(self._columns, copy=False)


def _concat_column(parts: list[np.ndarray]) -> np.ndarray:
    if any(p.dtype == object for p in parts):
        return np.concatenate([p.astype(object, copy=False) for p in parts])
    return np.concatenate(parts)
