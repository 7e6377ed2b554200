"""Failed requests pay for their own isolation, so that a few poison clients cannot starve the rest.

When a merged call fails, finding the failing requests takes extra model calls (``isolation``).
Answering those requests at once lets a client that keeps sending them come straight back and
poison the next batch too: eight such clients beside 64 good ones cost the good ones four fifths
of their throughput. So the model time spent isolating is charged to the requests that failed,
and their error answers are paced: one failure's answer waits until that cost is at most
``share`` of the time that has passed. The good requests of the batch were answered as soon as
their sub-batch succeeded, and never wait here.

Only a batch in which some request succeeded is charged: when every request failed (a broken
model), there is nobody to protect, and errors go out at once. No answer waits longer than
``max_delay`` or past its own deadline. Nothing about who sent a request is remembered: the only
state is when the next failure may be answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["FailurePacer"]

#: A delayed error goes out this long before its request's deadline, so it is not lost to the 504.
_DEADLINE_MARGIN = 0.05


class FailurePacer:
    """When each failed request's answer may go out (``share`` 1 turns pacing off)."""

    def __init__(self, share: float, max_delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < share <= 1 or max_delay < 0:
            raise ValueError("share must be in (0, 1] and max_delay not negative")
        self.share = share
        self.max_delay = max_delay
        self._clock = clock
        self._next = 0.0

    def delay(self, cost: float, deadline: float | None) -> float:
        """Seconds to hold the answer of a request that failed after costing others ``cost`` s."""
        if cost <= 0 or self.share >= 1:
            return 0.0
        now = self._clock()
        release = min(max(now, self._next) + cost / self.share, now + self.max_delay)
        self._next = release
        if deadline is not None:
            release = min(release, deadline - _DEADLINE_MARGIN)
        return max(0.0, release - now)
