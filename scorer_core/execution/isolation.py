"""Failure isolation: one merged model call for a batch, and when it fails, finding who failed.

A merged call can fail because one request's rows upset the model, or because the model returned
the wrong row count for the merged frame; nobody can tell which rows are at fault. The batch is
then split in halves, each scored merged, down to the failing requests (binary splitting, as in
group testing). Four rules keep that cheap and fair to the good requests beside a failing one:

- **Answers go out as soon as they are known.** ``settle`` receives every sub-batch that
  succeeds, at once, so a good request does not wait for the rest of the isolation.
- **No call is made twice for the same knowledge.** When a failing set's left half succeeds, the
  failure is in the right half, which is split without being scored whole first; a single request
  known to fail that way is scored alone last, to get its own error, after everything else.
- **Deadlines are respected.** A request whose deadline would pass before another call could end
  (judged by the fastest call of the batch so far) is not scored again: it gets 504 at once and
  costs no more model time.
- **Nothing is remembered across batches**, so one tenant's failures never change how another's
  requests are scored.

One poison request among ``n`` costs about ``2 * log2(n)`` extra calls; ``isolation_seconds`` in
the report is the model time those extra calls took, which the batcher charges to the requests
that failed (see ``scorer_core.execution.failures``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scorer_core.errors import ModelError, ScorerError, ScoringTimeout
from scorer_core.execution.merging import Batch
from scorer_core.execution.scoring import ScoringResult, ScoringTask, run_task
from scorer_core.runtime import Runtime
from scorer_core.wire.cellrows import CellRows, type_each

__all__ = ["BatchReport", "Outcome", "Settle", "WorkerCrash", "run_batch"]

log = logging.getLogger(__name__)

Outcome = ScoringResult | ScorerError
#: Receives outcomes as soon as they are known, by task index; may be called from any thread.
Settle = Callable[[Sequence[tuple[int, Outcome]]], None]


class WorkerCrash(ModelError):
    """The request's model call killed the worker process it ran in (a crash in native code, the
    OOM killer): it cost the pool a worker until a replacement has loaded the model, which the
    batcher charges to it (``BatchReport.restart_seconds``)."""


@dataclass(frozen=True)
class BatchReport:
    """One outcome per task, the model time spent because the merged call failed, and each model
    call made, as (seconds, rows): measured where the model runs, and carried back with the
    answers, so that the server's metrics lose no call when a worker dies later.

    ``restart_seconds``: the worker time lost to crashes caused by the tasks whose outcome is a
    ``WorkerCrash`` (a worker start for each crash), to be charged to them."""

    outcomes: list[Outcome]
    isolation_seconds: float = 0.0
    calls: tuple[tuple[float, int], ...] = ()
    restart_seconds: float = 0.0


def run_batch(
    runtime: Runtime,
    tasks: Sequence[ScoringTask],
    *,
    merged: ScoringTask | None = None,
    settle: Settle | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BatchReport:
    """Score ``tasks`` in one model call, isolating failures if it fails; one outcome per task.

    ``merged``: the batch's merged task, when it was already built (sent merged to a worker).
    ``settle`` is told of successes (and expired deadlines) as they happen; failures only come in
    the report, so that the batcher can decide when to answer them.
    """
    return _Isolation(runtime, tasks, settle, clock).run(merged)


class _Isolation:
    def __init__(
        self,
        runtime: Runtime,
        tasks: Sequence[ScoringTask],
        settle: Settle | None,
        clock: Callable[[], float],
    ) -> None:
        self.runtime = runtime
        self.tasks = list(tasks)
        self.settle = settle
        self.clock = clock
        self.outcomes: list[Outcome | None] = [None] * len(tasks)
        self.isolating = False
        self.isolation_seconds = 0.0
        #: The fastest model call of this batch so far: what another call will take at least.
        self.shortest_call = 0.0
        #: Requests known to fail only by inference; scored alone once all else is answered.
        self.suspects: list[int] = []
        #: Each model call made: (seconds, rows).
        self.calls: list[tuple[float, int]] = []

    def run(self, merged: ScoringTask | None) -> BatchReport:
        merged = self._type_cells(merged)
        everyone = self._live([i for i, outcome in enumerate(self.outcomes) if outcome is None])
        if everyone:
            failure = self._attempt(everyone, merged if len(everyone) == len(self.tasks) else None)
            if failure is not None:
                self.isolating = True
                if len(everyone) == 1:
                    self._fail(everyone[0], failure)
                else:
                    log.debug("A merged call of %d requests failed (%s); isolating", len(everyone), failure)
                    self._resolve(everyone, failure)
                    for index in self.suspects:
                        alone = self._live([index])
                        if alone:
                            error = self._attempt(alone)
                            if error is not None:
                                self._fail(index, error)
        outcomes = [o for o in self.outcomes if o is not None]
        assert len(outcomes) == len(self.tasks), "every task gets an outcome"
        return BatchReport(outcomes, self.isolation_seconds, tuple(self.calls))

    def _type_cells(self, merged: ScoringTask | None) -> ScoringTask | None:
        """Type the cells the tasks kept (``wire.cellrows``), all in one pass when they can be:
        the merged task over them then needs no copy. A task whose own cells cannot be typed is
        answered its 400 now, and never reaches the model."""
        kept = [(i, task.frame) for i, task in enumerate(self.tasks) if isinstance(task.frame, CellRows)]
        if not kept:
            return merged
        whole, frames = type_each([cells for _, cells in kept])
        bad: list[tuple[int, Outcome]] = []
        for (index, _), frame in zip(kept, frames, strict=True):
            if isinstance(frame, ScorerError):
                bad.append((index, frame))
            else:
                self.tasks[index] = dataclasses.replace(self.tasks[index], frame=frame)
        if bad:
            self._settle(bad)
        if whole is not None and len(kept) == len(self.tasks):
            return Batch(tuple(self.tasks)).merged(whole) if len(self.tasks) > 1 else None
        return None

    def _resolve(self, indices: list[int], failure: ScorerError | None, *, inferred: bool = False) -> None:
        """Give every task in ``indices`` its outcome. ``failure``: the error of a call of exactly
        these tasks (``inferred``: known to fail without that call having been made)."""
        alive = self._live(indices)
        if len(alive) != len(indices):
            failure, inferred = None, False  # the set that failed is not the set left
        if not alive:
            return
        if failure is None:
            failure = self._attempt(alive)
            if failure is None:
                return
            inferred = False
        if len(alive) == 1:
            if inferred:
                self.suspects.append(alive[0])
            else:
                self._fail(alive[0], failure)
            return
        middle = len(alive) // 2
        left, right = alive[:middle], alive[middle:]
        left_alive = self._live(left)
        left_failure = self._attempt(left_alive) if left_alive else None
        if left_failure is None and len(left_alive) == len(left):
            self._resolve(right, failure, inferred=True)  # the whole left half scored: it is in the right
            return
        self._resolve(right, None)  # no knowledge of it yet, so likely clean: its requests go first
        if left_failure is not None:
            self._resolve(left_alive, left_failure)

    def _attempt(self, indices: list[int], merged: ScoringTask | None = None) -> ScorerError | None:
        """Score exactly these tasks in one call: None when it succeeded (and they are settled)."""
        started = self.clock()
        try:
            if len(indices) == 1:
                results = [run_task(self.runtime, self.tasks[indices[0]])]
            else:
                batch = Batch(tuple(self.tasks[i] for i in indices))
                results = batch.split(run_task(self.runtime, merged or batch.merged()))
        except ScorerError as exc:
            return exc
        finally:
            took = self.clock() - started
            self.calls.append((took, sum(self.tasks[i].frame.num_rows for i in indices)))
            self.shortest_call = min(self.shortest_call, took) if self.shortest_call else took
            if self.isolating:
                self.isolation_seconds += took
        self._settle(list(zip(indices, results, strict=True)))
        return None

    def _live(self, indices: Sequence[int] | range) -> list[int]:
        """The tasks among ``indices`` still worth scoring; the others get 504 now."""
        now = self.clock() + self.shortest_call
        alive: list[int] = []
        expired: list[int] = []
        for index in indices:
            deadline = self.tasks[index].deadline
            (expired if deadline is not None and deadline <= now else alive).append(index)
        if expired:
            self._settle([(i, _expired()) for i in expired])
        return alive

    def _settle(self, pairs: list[tuple[int, Outcome]]) -> None:
        for index, outcome in pairs:
            self.outcomes[index] = outcome
        if self.settle is not None:
            self.settle(pairs)

    def _fail(self, index: int, error: ScorerError) -> None:
        self.outcomes[index] = error


def _expired() -> ScoringTimeout:
    return ScoringTimeout(
        "the request's time (SCORER_REQUEST_TIMEOUT) ran out while a failing request merged with it "
        "was being isolated; retry it"
    )
