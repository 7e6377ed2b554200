"""The scoring seam: one model call for a list of tasks, with headers set and results checked.

``run_tasks`` is where the batcher plugs in: it receives the tasks of one batch (one task per
request today) and returns one result or error per task.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

__all__ = ["ScoringResult", "ScoringTask", "ThreadScorer", "run_task", "run_tasks"]

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


class ThreadScorer:
    """Runs tasks in a pool of ``concurrency`` threads, off the event loop.

    A runtime with ``thread_safe = False`` gets one call at a time.
    """

    def __init__(self, model: ServedModel, concurrency: int) -> None:
        self.model = model
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scorer")
        self._lock = None if getattr(model.runtime, "thread_safe", True) else threading.Lock()

    def _run(self, task: ScoringTask) -> ScoringResult | ScorerError:
        if self._lock is None:
            return run_tasks(self.model, [task])[0]
        with self._lock:
            return run_tasks(self.model, [task])[0]

    async def submit(self, task: ScoringTask) -> ScoringResult:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, self._run, task)
        if isinstance(result, ScorerError):
            raise result
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
