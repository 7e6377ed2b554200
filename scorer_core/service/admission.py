"""Admission control: at most SCORING_CONCURRENCY requests in flight, a bounded queue, then 503.

Waiting is a future in a FIFO and one timer, and a finishing request hands its slot straight to
the oldest waiter. ``asyncio.Semaphore`` with ``wait_for`` (a task per waiter, a wake-up race per
release) cost a third of the throughput at 512 clients.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from scorer_core.errors import Overloaded

__all__ = ["Admission"]


class Admission:
    """Lets ``concurrency`` requests through at once; ``queue_size`` more may wait ``queue_timeout`` s.

    A request that finds the queue full, or waits too long, gets ``Overloaded`` (503, or
    ``reject_status``, with Retry-After), which H2O's scoring client retries.
    """

    def __init__(
        self, concurrency: int, queue_size: int, queue_timeout: float, reject_status: int = 503
    ) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.reject_status = reject_status
        self.in_flight = 0
        self.waiting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.queue_timeout))

    @property
    def full(self) -> bool:
        """Whether a request arriving now would be refused at once."""
        return self.in_flight >= self.concurrency and self.waiting >= self.queue_size

    def refusal(self) -> Overloaded:
        return Overloaded(
            f"the server is at capacity ({self.concurrency} requests in flight, SCORING_CONCURRENCY; "
            f"{self.waiting} waiting, SCORER_QUEUE_SIZE); retry later",
            retry_after=self.retry_after,
            status_code=self.reject_status,
        )

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.in_flight < self.concurrency and not self.waiting:
            self.in_flight += 1
        else:
            await self._wait()  # the slot is handed over: in_flight already counts it
        try:
            yield
        finally:
            self._release()

    async def _wait(self) -> None:
        if self.waiting >= self.queue_size:
            raise self.refusal()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        timer = loop.call_later(self.queue_timeout, self._expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.cancelled():  # the client left while waiting
                self.waiting -= 1
            elif waiter.exception() is None:
                self._release()  # granted, then cancelled before it could use the slot
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.waiting -= 1
            waiter.set_exception(
                Overloaded(
                    f"no scoring slot became free within {self.queue_timeout:g} s (SCORER_QUEUE_TIMEOUT); "
                    "retry later",
                    retry_after=self.retry_after,
                    status_code=self.reject_status,
                )
            )

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # expired and cancelled waiters are skipped
                self.waiting -= 1
                waiter.set_result(None)
                return
        self.in_flight -= 1
