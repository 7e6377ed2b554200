"""The scoring seam: one model call for a list of tasks, with headers set and results checked.

``run_task`` is one model call; ``scorer_core.batching.run_batch`` merges tasks into one such call
and falls back to ``run_tasks`` (each alone) when the merged call fails.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scorer_core.context import forwarded_headers
from scorer_core.errors import ModelError, RowCountMismatch, ScorerError
from scorer_core.frame import Frame
from scorer_core.headers import ForwardedHeaders
from scorer_core.model import ServedModel
from scorer_core.runtime import ContributionGroup, Contributions
from scorer_core.schema import ShapleyType
from scorer_core.validation import check_columns

__all__ = ["ScoringResult", "ScoringTask", "run_task", "run_tasks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringTask:
    """The model work one request needs."""

    frame: Frame
    headers: ForwardedHeaders
    outputs: bool = True
    shapley: ShapleyType = ShapleyType.NONE
    intervals: bool = False


@dataclass(frozen=True)
class ScoringResult:
    """What the model returned for one task, checked to hold exactly the task's rows."""

    outputs: dict[str, np.ndarray] | None = None
    intervals: dict[str, np.ndarray] | None = None
    contributions: Contributions | None = None


def run_task(model: ServedModel, task: ScoringTask) -> ScoringResult:
    """Run one task's model calls under its forwarded headers and validate every result."""
    runtime = model.runtime
    name = model.runtime_name
    n = task.frame.num_rows
    with forwarded_headers(task.headers):
        try:
            outputs = intervals = None
            contributions = None
            if task.outputs and n:
                if task.intervals:
                    raw, raw_bounds = runtime.score_with_intervals(task.frame)
                    intervals = check_columns(name, "prediction intervals", raw_bounds, None, n)
                else:
                    raw = runtime.score(task.frame)
                outputs = check_columns(name, "scoring", raw, model.schema.output_names, n)
            elif task.outputs:
                outputs = {f.name: np.empty(0, dtype=object) for f in model.schema.outputs}
            if task.shapley is not ShapleyType.NONE:
                contributions = _checked_contributions(
                    name, runtime.contributions(task.frame, task.shapley), n
                )
        except ScorerError:
            raise
        except Exception as exc:
            raise ModelError(f"Runtime '{name}' raised {type(exc).__name__}: {exc}", runtime=name) from exc
    return ScoringResult(outputs, intervals, contributions)


def _checked_contributions(runtime: str, contributions: Contributions, n: int) -> Contributions:
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


def run_tasks(model: ServedModel, tasks: Sequence[ScoringTask]) -> list[ScoringResult | ScorerError]:
    """Score a list of tasks; each gets its result or its own error, never a neighbour's."""
    results: list[ScoringResult | ScorerError] = []
    for task in tasks:
        try:
            results.append(run_task(model, task))
        except ScorerError as exc:
            results.append(exc)
    return results
