"""Pure merge and split of scoring tasks.

Nothing here knows about event loops, threads or processes: a batch is a list of tasks that share
a batch key, merged into one frame, scored once, and cut back into one result per task by row
offset. ``scorer_core.execution.isolation`` makes the call and finds the culprits when it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.frame import Frame
from scorer_core.runtime import ContributionGroup, Contributions
from scorer_core.schema import ShapleyType
from scorer_core.wire.cellrows import CellRows, Typed

__all__ = ["Batch", "BatchKey", "batch_key"]

#: Everything that changes the model call: endpoint (outputs or contributions only), Shapley type,
#: prediction intervals, and the forwarded header values; and whether the rows are still cells,
#: so that a batch is all cells (typed once, merged) or all typed frames. Only equal keys share a
#: call.
BatchKey = tuple[bool, ShapleyType, bool, tuple[tuple[str, str], ...], bool]


def batch_key(task: ScoringTask) -> BatchKey:
    return (
        task.outputs,
        task.shapley,
        task.intervals,
        tuple(sorted(task.headers.items())),
        isinstance(task.frame, CellRows),
    )


def merge_rows(parts: Sequence[Typed]) -> Typed:
    """One batch's rows: cells kept as cells (typed later, once), typed frames concatenated."""
    cells = [part for part in parts if isinstance(part, CellRows)]
    frames = [part for part in parts if isinstance(part, Frame)]
    if cells and frames:
        raise ValueError("a batch holds cells or typed frames, not both (see batch_key)")
    return CellRows.concat(cells) if cells else Frame.concat(frames)


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

    def merged(self, frame: Typed | None = None) -> ScoringTask:
        """The tasks as one task: over ``frame`` when their rows are merged already, typed
        (``wire.cellrows.type_each``), else over their rows merged here."""
        first = self.tasks[0]
        if frame is None:
            frame = merge_rows([t.frame for t in self.tasks])
        deadlines = self.deadlines
        latest = None if None in deadlines else max(d for d in deadlines if d is not None)
        return ScoringTask(frame, first.headers, first.outputs, first.shapley, first.intervals, latest)

    @property
    def deadlines(self) -> list[float | None]:
        return [t.deadline for t in self.tasks]

    @classmethod
    def from_merged(
        cls, merged: ScoringTask, offsets: Sequence[int], deadlines: Sequence[float | None]
    ) -> Batch:
        """The batch whose ``merged()`` is ``merged``: tasks are row slices (views) of its frame."""
        return cls(
            tuple(
                ScoringTask(
                    merged.frame.slice(start, stop),
                    merged.headers,
                    merged.outputs,
                    merged.shapley,
                    merged.intervals,
                    deadline,
                )
                for (start, stop), deadline in zip(pairwise(offsets), deadlines, strict=True)
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
