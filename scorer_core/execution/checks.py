"""Checks of what a runtime returned: named columns of exactly the request's rows, contributions
of the declared width. A wrong row count is a ``RowCountMismatch``, never a silent misalignment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scorer_core.errors import ModelError, RowCountMismatch
from scorer_core.runtime import ContributionGroup, Contributions

__all__ = ["check_columns", "check_contributions"]


def check_columns(
    runtime: str, what: str, columns: Any, expected_names: Sequence[str] | None, num_rows: int
) -> dict[str, np.ndarray]:
    """Validate a model's output mapping: declared names present, exactly ``num_rows`` per column.

    A wrong row count is a ``RowCountMismatch``, never a silent misalignment.
    """
    if not isinstance(columns, Mapping):
        raise ModelError(
            f"Runtime '{runtime}' returned {type(columns).__name__} for {what}; expected a mapping "
            "of column name to values",
            runtime=runtime,
        )
    names = list(columns) if expected_names is None else list(expected_names)
    checked: dict[str, np.ndarray] = {}
    for name in names:
        if name not in columns:
            raise ModelError(
                f"Runtime '{runtime}' returned no '{name}' column for {what}; it returned "
                f"{sorted(map(str, columns))}",
                runtime=runtime,
            )
        column = columns[name]
        array = column if isinstance(column, np.ndarray) else np.asarray(column, dtype=object)
        length = array.shape[0] if array.ndim else 1
        if length != num_rows or array.ndim != 1:
            raise RowCountMismatch(runtime=runtime, expected=num_rows, actual=length)
        checked[name] = array
    return checked


def check_contributions(runtime: str, contributions: Contributions, n: int) -> Contributions:
    """Validate contributions: every group ``n`` rows of one value per feature."""
    width = len(contributions.features)
    groups = []
    for group in contributions.groups:
        values = np.asarray(group.values)
        if values.ndim != 2 or values.shape[0] != n:
            actual = values.shape[0] if values.ndim else 0
            raise RowCountMismatch(runtime=runtime, expected=n, actual=actual)
        if values.shape[1] != width:
            raise ModelError(
                f"Runtime '{runtime}' returned {values.shape[1]} contributions per row for {width} features",
                runtime=runtime,
            )
        groups.append(ContributionGroup(group.output_group, values))
    return Contributions(list(contributions.features), groups)
