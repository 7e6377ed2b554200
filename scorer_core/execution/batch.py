"""Pure merge and split of scoring tasks, and the merged model call with per-request fallback.

Nothing here knows about event loops, threads or processes: a batch is a list of tasks that share
a batch key, merged into one frame, scored once, and cut back into one result per task by row
offset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

from scorer_core.errors import ScorerError
from scorer_core.execution.scoring import ScoringResult, ScoringTask, run_task, run_tasks
from scorer_core.frame import Frame
from scorer_core.runtime import ContributionGroup, Contributions, Runtime
from scorer_core.schema import ShapleyType

__all__ = ["Batch", "BatchKey", "batch_key", "run_batch", "run_merged"]

log = logging.getLogger(__name__)

#: Everything that changes the model call: endpoint (outputs or contributions only), Shapley type,
#: prediction intervals, and the forwarded header values. Only equal keys share a call.
BatchKey = tuple[bool, ShapleyType, bool, tuple[tuple[str, str], ...]]


def batch_key(task: ScoringTask) -> BatchKey:
    return (task.outputs, task.shapley, task.intervals, tuple(sorted(task.headers.items())))


@dataclass(frozen=True)
class Batch:
    """Tasks with one batch key, in arrival order."""

    tasks: tuple[ScoringTask, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a batch needs at least one task")
        keys = {batch_key(t) for t in self.tasks}
        if len(keys) != 1:
            raise ValueError(
                f"tasks with different batch keys cannot share a batch: {sorted(map(str, keys))}"
            )

    @property
    def offsets(self) -> list[int]:
        """Start row of each task in the merged frame, plus the total at the end."""
        return [0, *accumulate(t.frame.num_rows for t in self.tasks)]

    def merged(self) -> ScoringTask:
        first = self.tasks[0]
        frame = Frame.concat([t.frame for t in self.tasks])
        return ScoringTask(frame, first.headers, first.outputs, first.shapley, first.intervals)

    @classmethod
    def from_merged(cls, merged: ScoringTask, offsets: Sequence[int]) -> Batch:
        """The batch whose ``merged()`` is ``merged``: tasks are row slices (views) of its frame."""
        return cls(
            tuple(
                ScoringTask(
                    merged.frame.slice(start, stop),
                    merged.headers,
                    merged.outputs,
                    merged.shapley,
                    merged.intervals,
                )
                for start, stop in pairwise(offsets)
            )
        )

    def split(self, result: ScoringResult) -> list[ScoringResult]:
        """One result per task: the rows ``offsets[i]`` to ``offsets[i + 1]`` of every part."""
        offsets = self.offsets
        parts = []
        for start, stop in pairwise(offsets):
            outputs = (
                {n: c[start:stop] for n, c in result.outputs.items()} if result.outputs is not None else None
            )
            intervals = (
                {n: c[start:stop] for n, c in result.intervals.items()}
                if result.intervals is not None
                else None
            )
            contributions = None
            if result.contributions is not None:
                contributions = Contributions(
                    result.contributions.features,
                    [
                        ContributionGroup(g.output_group, g.values[start:stop])
                        for g in result.contributions.groups
                    ],
                )
            parts.append(ScoringResult(outputs, intervals, contributions))
        return parts


def run_batch(runtime: Runtime, tasks: Sequence[ScoringTask]) -> list[ScoringResult | ScorerError]:
    """Score tasks in one model call; if that call fails, find the culprits by halving the batch.

    A merged call can fail because one request's rows upset the model, or because the model
    returned the wrong row count for the merged frame. Nobody can tell which rows are at fault,
    so the batch is split in two halves and each half is scored merged again, down to single
    requests, which get their own result or error. One poison request among ``n`` then costs
    about ``2 * log2(n)`` extra calls instead of ``n``, and the good requests beside it still go
    in large calls. Nothing is remembered across batches, so one tenant's requests cannot change
    how another's are scored. No request ever receives another request's rows.
    """
    if len(tasks) == 1:
        return run_tasks(runtime, tasks)
    return run_merged(runtime, Batch(tuple(tasks)))


def run_merged(
    runtime: Runtime, batch: Batch, merged: ScoringTask | None = None
) -> list[ScoringResult | ScorerError]:
    """``run_batch`` for a batch whose merged task may already exist (sent merged to a worker)."""
    tasks = batch.tasks
    if len(tasks) == 1:
        return run_tasks(runtime, tasks)
    try:
        return list(batch.split(run_task(runtime, merged or batch.merged())))
    except ScorerError as exc:
        log.warning("A merged call of %d requests failed (%s); scoring it in halves", len(tasks), exc)
    middle = len(tasks) // 2
    return [
        *run_merged(runtime, Batch(tasks[:middle])),
        *run_merged(runtime, Batch(tasks[middle:])),
    ]
