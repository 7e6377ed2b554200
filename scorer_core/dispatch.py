"""Dispatcher: admission, batching and the model-call executor behind the HTTP endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from scorer_core.admission import Admission
from scorer_core.batching import Batcher, run_batch
from scorer_core.errors import ScorerError, ScoringTimeout
from scorer_core.model import ServedModel
from scorer_core.scoring import ScoringResult, ScoringTask
from scorer_core.settings import Settings
from scorer_core.workers.pool import WorkerPool

__all__ = ["Dispatcher", "ThreadExecutor"]


class ThreadExecutor:
    """Runs batches on ``threads`` threads of the server process (``BATCH_WORKERS=0``).

    A runtime with ``thread_safe = False`` gets one call at a time whatever ``threads`` says.
    """

    def __init__(self, model: ServedModel, threads: int) -> None:
        self.model = model
        self.slots = threads if getattr(model.runtime, "thread_safe", True) else 1
        self._pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="scorer-model")

    def _run(self, tasks: Sequence[ScoringTask]) -> list[ScoringResult | ScorerError]:
        return run_batch(self.model, tasks)

    async def __call__(self, tasks: Sequence[ScoringTask]) -> list[ScoringResult | ScorerError]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, tasks)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)


class Dispatcher:
    """Everything between a validated request and its model result."""

    def __init__(self, model: ServedModel, settings: Settings) -> None:
        # The worker pool belongs to the model (it closes with it); the thread executor to us.
        self._threads = None if model.executor is not None else ThreadExecutor(model, settings.model_threads)
        executor: WorkerPool | ThreadExecutor = model.executor or self._threads  # type: ignore[assignment]
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
        if self._threads is not None:
            await self._threads.close()
