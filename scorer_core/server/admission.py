"""Admission control: at most SCORING_CONCURRENCY requests in flight, a bounded queue, then 503."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from scorer_core.errors import Overloaded

__all__ = ["Admission"]


class Admission:
    """Lets ``concurrency`` requests through at once; ``queue_size`` more may wait ``queue_timeout`` s.

    A request that finds the queue full, or waits too long, gets ``Overloaded`` (503 with
    Retry-After), which H2O's scoring client retries.
    """

    def __init__(self, concurrency: int, queue_size: int, queue_timeout: float) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.in_flight = 0
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    @property
    def _retry_after(self) -> int:
        return max(1, math.ceil(self.queue_timeout))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        slots = self._slots
        if slots.locked():
            if self.waiting >= self.queue_size:
                raise Overloaded(
                    f"the server is at capacity ({self.concurrency} requests in flight, SCORING_CONCURRENCY; "
                    f"{self.waiting} waiting, SCORER_QUEUE_SIZE); retry later",
                    retry_after=self._retry_after,
                )
            self.waiting += 1
            try:
                await asyncio.wait_for(slots.acquire(), self.queue_timeout)
            except TimeoutError:
                raise Overloaded(
                    f"no scoring slot became free within {self.queue_timeout:g} s (SCORER_QUEUE_TIMEOUT); "
                    "retry later",
                    retry_after=self._retry_after,
                ) from None
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            slots.release()
