"""``ScoredQueue``: scored requests waiting for the one thread that sends them on.

The server's relay (to the export process) and each sink's outbox (in that process) hold one
each: the relay's holds a small request as its encoded record, the outboxes' the requests.
Bounded in requests and in rows, so that a slow or dead consumer costs the memory it was allowed
and never the event loop's time: ``offer`` never waits, and says what it dropped for the owner to
count; ``take`` hands the consumer a batch, letting it gather first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from scorer_core.monitor.events import EVENT_ROWS
from scorer_core.service.scored import ScoredRequest

__all__ = ["BATCH_REQUESTS", "GATHER_SECONDS", "Limits", "ScoredQueue", "events_in", "events_of"]

#: Requests taken from a queue at once: their events are shaped and sent as one batch.
BATCH_REQUESTS = 256
#: Most seconds a batch waits to grow to BATCH_REQUESTS before it is taken: the delay monitoring
#: adds to an event, for far fewer hand-offs of the GIL (a thread woken for each request would
#: take it from the event loop as often, and each batch costs the same whatever its size).
GATHER_SECONDS = 0.1


@dataclass(frozen=True)
class Limits:
    """How much a queue may hold, and how long its consumer retries a sink."""

    requests: int
    rows: int
    retry_seconds: float


#: What a queue holds: a scored request, or its record.
Item = TypeVar("Item")


def events_in(rows: int) -> int:
    """The events a scored request of ``rows`` rows becomes: one per ``EVENT_ROWS``, at least one."""
    return max(1, -(-rows // EVENT_ROWS))


def events_of(scored: ScoredRequest) -> int:
    """The events ``scored`` becomes."""
    return events_in(scored.num_rows)


class ScoredQueue(Generic[Item]):
    """Offered from the event loop, taken by one consumer thread, closed by a stop. ``rows_of``:
    an item's row count."""

    def __init__(self, limits: Limits, rows_of: Callable[[Item], int]) -> None:
        self._limits = limits
        self._rows_of = rows_of
        self._queue: deque[Item] = deque()
        self._rows = 0
        self._ready = threading.Condition(threading.Lock())
        self._closing = False
        #: When a stopping server gives up on what is left (``time.monotonic()``).
        self.flush_until = float("inf")

    @property
    def depth(self) -> int:
        """Requests waiting now."""
        return len(self._queue)

    def full(self, rows: int) -> bool:
        """Whether an offer of ``rows`` rows now would be dropped (read without the lock: the offer
        decides)."""
        queue = self._queue
        limits = self._limits
        return (
            self._closing or len(queue) >= limits.requests or bool(queue and self._rows + rows > limits.rows)
        )

    def offer(self, scored: Item) -> int:
        """Queue ``scored``; or, when full or closing, drop it: the events dropped (0: queued)."""
        rows = self._rows_of(scored)
        with self._ready:
            if self.full(rows):
                return events_in(rows)
            queue = self._queue
            queue.append(scored)
            self._rows += rows
            if len(queue) == 1 or len(queue) == BATCH_REQUESTS:
                self._ready.notify()
            return 0

    def take(self, idle_seconds: float) -> list[Item] | None:
        """Up to ``BATCH_REQUESTS`` requests, once some wait (given ``GATHER_SECONDS`` to grow
        to a full batch); ``[]`` after ``idle_seconds`` with none; None once closing and empty."""
        with self._ready:
            if not self._queue:
                if self._closing:
                    return None
                self._ready.wait(idle_seconds)
                if not self._queue:
                    return None if self._closing else []
            if len(self._queue) < BATCH_REQUESTS and not self._closing:
                self._ready.wait(GATHER_SECONDS)
            queue = self._queue
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH_REQUESTS))]
            self._rows -= sum(map(self._rows_of, batch))
            return batch

    def pause_until(self, when: float) -> bool:
        """Wait until ``when`` (``time.monotonic()``); False, at once, when a stop's flush time
        comes first. ``close`` wakes the wait: a stop must not sleep out a consumer's pause."""
        with self._ready:
            while True:
                if when > self.flush_until:
                    return False
                left = when - time.monotonic()
                if left <= 0:
                    return True
                self._ready.wait(left)  # offers wake it too: each wake-up checks again

    def close(self, flush_until: float) -> None:
        """Take nothing more; the consumer has until ``flush_until`` for what is queued."""
        with self._ready:
            self._closing = True
            self.flush_until = flush_until
            self._ready.notify_all()

    def clear(self) -> list[Item]:
        """Empty the queue: what was left in it (after a stop's flush time)."""
        with self._ready:
            left = list(self._queue)
            self._queue.clear()
            self._rows = 0
            return left
