"""The asyncio side of batching: a queue of pending tasks drained by one loop per concurrent model call.

Batches form by themselves under load: a loop takes the oldest pending task and every other
pending task with the same batch key (up to ``max_rows`` rows), so while all loops are busy,
arriving requests pile up and go together in the next call. At low load a request goes at once,
alone; ``max_wait`` (default 0) can hold a partial batch a little longer to grow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from scorer_core.errors import ModelError, ScorerError
from scorer_core.execution.failures import FailurePacer
from scorer_core.execution.isolation import BatchReport, Outcome, Settle, WorkerCrash
from scorer_core.execution.merging import BatchKey, batch_key
from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.execution.timeouts import within

__all__ = ["Batcher", "Execute", "Observe"]

log = logging.getLogger(__name__)

#: Runs one batch's tasks (one model call, or several on failure): tells ``Settle`` of outcomes as
#: they are known, from any thread, and reports one outcome per task at the end.
Execute = Callable[[Sequence[ScoringTask], Settle], Awaitable[BatchReport]]
#: Told of each batch once its report is in: its tasks, each one's wait in the queue (seconds), the
#: report, and when the batch was sent (``time.perf_counter()``).
Observe = Callable[[Sequence[ScoringTask], list[float], BatchReport, float], None]


@dataclass
class _Pending:
    task: ScoringTask
    key: BatchKey
    future: asyncio.Future[ScoringResult]
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        return self.task.frame.num_rows


class Batcher:
    """Merges concurrent tasks with equal batch keys into calls of ``execute``.

    ``concurrency`` loops run at once, one per model call that can run at once (a thread or a worker
    process, as the executor says); each awaits
    ``execute`` for its batch. Queues are created inside the running loop on first use.
    """

    def __init__(
        self,
        execute: Execute,
        *,
        concurrency: int,
        max_rows: int,
        max_wait: float = 0.0,
        pacer: FailurePacer | None = None,
        observe: Observe | None = None,
    ) -> None:
        if concurrency < 1 or max_rows < 1 or max_wait < 0:
            raise ValueError("concurrency and max_rows must be positive and max_wait not negative")
        self._execute = execute
        self._pacer = pacer
        self._observe = observe
        self.concurrency = concurrency
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._pending: deque[_Pending] = deque()
        self._wakeup: asyncio.Condition | None = None
        self._loops: list[asyncio.Task[None]] = []
        #: Sizes of the batches sent so far (requests, rows), for logs and tests.
        self.batches_sent = 0
        self.requests_sent = 0

    def _start(self) -> asyncio.Condition:
        if self._wakeup is None:
            self._wakeup = asyncio.Condition()
            self._loops = [
                asyncio.create_task(self._drain(), name=f"batcher-loop-{i}") for i in range(self.concurrency)
            ]
        return self._wakeup

    async def submit(self, task: ScoringTask) -> ScoringResult:
        """Queue a task; resolves to its own result or raises its own error."""
        wakeup = self._start()
        future: asyncio.Future[ScoringResult] = asyncio.get_running_loop().create_future()
        async with wakeup:
            self._pending.append(_Pending(task, batch_key(task), future))
            wakeup.notify()
        return await future

    def _rows_for(self, key: BatchKey) -> int:
        return sum(p.rows for p in self._pending if p.key == key and not p.future.done())

    def _take(self) -> list[_Pending]:
        """The oldest live task and the pending tasks sharing its key, up to ``max_rows`` rows."""
        while self._pending and self._pending[0].future.done():  # cancelled by a client that left
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        taken, rows, kept = [first], first.rows, deque[_Pending]()
        while self._pending:
            entry = self._pending.popleft()
            if entry.future.done():
                continue
            if entry.key == first.key and rows + entry.rows <= self.max_rows:
                taken.append(entry)
                rows += entry.rows
            else:
                kept.append(entry)
        self._pending = kept
        return taken

    async def _drain(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            async with wakeup:
                await wakeup.wait_for(lambda: bool(self._pending))
                if self.max_wait:
                    await self._grow(wakeup, self._pending[0])
                batch = self._take()
            if batch:
                await self._run(batch)

    async def _grow(self, wakeup: asyncio.Condition, oldest: _Pending) -> None:
        """Hold the oldest task until its key has ``max_rows`` rows or it has waited ``max_wait``."""
        remaining = oldest.enqueued + self.max_wait - time.perf_counter()
        if remaining > 0 and self._rows_for(oldest.key) < self.max_rows:
            with contextlib.suppress(TimeoutError):
                await within(wakeup.wait_for(lambda: self._rows_for(oldest.key) >= self.max_rows), remaining)

    async def _run(self, batch: list[_Pending]) -> None:
        self.batches_sent += 1
        self.requests_sent += len(batch)
        loop = asyncio.get_running_loop()

        def settle_soon(pairs: Sequence[tuple[int, Outcome]]) -> None:
            loop.call_soon_threadsafe(self._settle, batch, pairs)

        if self._observe is not None:
            started = time.perf_counter()
            waits = [started - p.enqueued for p in batch]
        try:
            report = await self._execute([p.task for p in batch], settle_soon)
            if len(report.outcomes) != len(batch):
                raise RuntimeError(f"executor gave {len(report.outcomes)} outcomes for {len(batch)} tasks")
        except Exception as exc:  # the executor itself failed (e.g. a worker died): fail this batch only
            if not isinstance(exc, ScorerError):
                log.exception("Scoring a batch of %d requests failed", len(batch))
                exc = ModelError(f"scoring failed: {type(exc).__name__}: {exc}", runtime="scorer_core")
            report = BatchReport([exc] * len(batch))
        if self._observe is not None:
            try:
                self._observe([p.task for p in batch], waits, report, started)
            except Exception:  # metrics must never fail a batch
                log.exception("Observing a batch failed")
        self._settle(batch, [(i, o) for i, o in enumerate(report.outcomes) if not isinstance(o, ModelError)])
        failed = [i for i, o in enumerate(report.outcomes) if isinstance(o, ModelError)]
        crashed = [i for i in failed if isinstance(report.outcomes[i], WorkerCrash)]
        # Isolation is charged only when it delayed requests that succeeded (see FailurePacer); a
        # crash always is, as the restart it caused costs the other workers' clients too.
        shared = (
            report.isolation_seconds / len(failed)
            if failed and len(failed) < len(batch) and report.isolation_seconds > 0
            else 0.0
        )
        for index in failed:
            pending, error = batch[index], report.outcomes[index]
            crash = index in crashed
            cost = shared + (report.restart_seconds / len(crashed) if crash else 0.0)
            delay = (
                self._pacer.delay(cost, pending.task.deadline, capped=not crash)
                if cost > 0 and self._pacer is not None
                else 0.0
            )
            if delay > 0:
                loop.call_later(delay, self._settle, batch, [(index, error)])
            else:
                self._settle(batch, [(index, error)])

    @staticmethod
    def _settle(batch: list[_Pending], pairs: Sequence[tuple[int, Outcome]]) -> None:
        for index, outcome in pairs:
            future = batch[index].future
            if future.done():
                continue
            if isinstance(outcome, ScorerError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def close(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for pending in self._pending:
            if not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
