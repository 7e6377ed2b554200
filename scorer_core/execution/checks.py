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
        if array.ndim == 0:
            raise ModelError(
                f"Runtime '{runtime}' returned {_a(type(column).__name__)} as column '{name}' for {what}; "
                f"expected a sequence of {num_rows} values, one per row",
                runtime=runtime,
            )
        if array.shape[0] != num_rows:
            raise RowCountMismatch(runtime=runtime, expected=num_rows, actual=array.shape[0])
        if array.ndim != 1:
            raise ModelError(
                f"Runtime '{runtime}' returned values of shape {array.shape} as column '{name}' for {what}; "
                "expected one value per row, not a sequence of them",
                runtime=runtime,
            )
        checked[name] = array
    return checked


def check_contributions(runtime: str, contributions: Contributions, n: int) -> Contributions:
    """Validate contributions: every group ``n`` rows of one value per feature."""
    width = len(contributions.features)
    groups = []
    for group in contributions.groups:
        values = np.asarray(group.values)
        if values.ndim != 2:
            raise ModelError(
                f"Runtime '{runtime}' returned contributions of shape {values.shape}; expected one row of "
                f"{width} values (one per feature) per row",
                runtime=runtime,
            )
        if values.shape[0] != n:
            raise RowCountMismatch(runtime=runtime, expected=n, actual=values.shape[0])
        if values.shape[1] != width:
            raise ModelError(
                f"Runtime '{runtime}' returned {values.shape[1]} contributions per row for {width} features",
                runtime=runtime,
            )
        groups.append(ContributionGroup(group.output_group, values))
    return Contributions(list(contributions.features), groups)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
