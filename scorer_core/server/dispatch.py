"""Dispatcher: batching and the request deadline between a prepared request and its executor."""

from __future__ import annotations

import asyncio

from scorer_core.config.settings import Settings
from scorer_core.errors import ScoringTimeout
from scorer_core.execution.batcher import Batcher
from scorer_core.execution.executors import Executor
from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.server.admission import Admission

__all__ = ["Dispatcher"]


class Dispatcher:
    """Everything between a validated request and its model result. The executor is not its own:
    the ``ModelHost`` that loaded it closes it."""

    def __init__(self, executor: Executor, settings: Settings) -> None:
        self.batcher = Batcher(
            executor,
            slots=executor.slots,
            max_rows=settings.batch_max_rows,
            max_wait=settings.batch_max_wait_ms / 1000,
        )
        self.admission = Admission(settings.scoring_concurrency, settings.queue_size, settings.queue_timeout)
        self.request_timeout = settings.request_timeout

    async def score(self, task: ScoringTask) -> ScoringResult:
        try:
            return await asyncio.wait_for(self.batcher.submit(task), self.request_timeout)
        except TimeoutError:
            raise ScoringTimeout(
                f"the request was not scored within {self.request_timeout:g} s (SCORER_REQUEST_TIMEOUT)"
            ) from None

    async def close(self) -> None:
        await self.batcher.close()
