"""Dispatcher: batching and the request deadline between a prepared request and its executor.

Who watches the batches (metrics, tracing) is the front's business: it passes their observers in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from scorer_core.config.settings import Settings
from scorer_core.errors import ScoringTimeout
from scorer_core.execution.batcher import Batcher
from scorer_core.execution.executors import Executor
from scorer_core.execution.failures import FailurePacer
from scorer_core.execution.isolation import BatchReport
from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.execution.timeouts import within
from scorer_core.wire.deadline import DeadlinePassed, working_until

__all__ = ["BatchObserver", "Dispatcher"]

T = TypeVar("T")

#: Told of each batch once it is answered: its tasks, each one's wait, the report, its start time.
BatchObserver = Callable[[Sequence[ScoringTask], list[float], BatchReport, float], None]


class Dispatcher:
    """Everything between a validated request and its model result. The executor is not its own:
    the ``ModelHost`` that loaded it closes it."""

    def __init__(
        self,
        executor: Executor,
        settings: Settings,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        observers = tuple(observers)

        def observe(
            tasks: Sequence[ScoringTask], waits: list[float], report: BatchReport, started: float
        ) -> None:
            for observer in observers:
                observer(tasks, waits, report, started)

        self.batcher = Batcher(
            executor,
            concurrency=executor.concurrency,
            max_rows=settings.batch_max_rows,
            max_wait=settings.batch_max_wait_ms / 1000,
            pacer=FailurePacer(settings.failure_share, settings.failure_max_delay),
            observe=observe if observers else None,
        )
        self.request_timeout = settings.request_timeout

    def deadline(self) -> float:
        """When a request admitted now must have its answer (``time.monotonic()``)."""
        return time.monotonic() + self.request_timeout

    async def score(self, task: ScoringTask) -> ScoringResult:
        """The task's result, or ``ScoringTimeout`` (504) at its deadline (now plus the request
        timeout when it has none)."""
        if task.deadline is None:
            task = dataclasses.replace(task, deadline=self.deadline())
        assert task.deadline is not None
        try:
            return await within(self.batcher.submit(task), task.deadline - time.monotonic())
        except TimeoutError:
            raise self.timeout() from None

    async def off_loop(self, work: Callable[[], T], deadline: float) -> T:
        """``work()`` in a thread, so that the event loop keeps serving; 504 at ``deadline``.

        The thread cannot be killed; it stops at the next ``wire.deadline.checkpoint`` past the
        deadline (between pieces of a body, chunks of an answer), and its answer is dropped."""
        with working_until(deadline):  # the thread runs in a copy of this context
            try:
                return await within(asyncio.to_thread(work), deadline - time.monotonic())
            except (TimeoutError, DeadlinePassed):
                raise self.timeout() from None

    def timeout(self) -> ScoringTimeout:
        return ScoringTimeout(
            f"the request was not scored within {self.request_timeout:g} s (SCORER_REQUEST_TIMEOUT)"
        )

    async def close(self) -> None:
        await self.batcher.close()
