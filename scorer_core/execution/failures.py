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

A request that crashed a worker process is charged more: the pool lost that worker for as long as
a replacement takes to load the model (seconds, and a core while it loads), so the charge is that
start time, and it is charged even when nobody shared its batch, since the other workers' clients
pay for the restart. ``max_delay`` does not bound that wait, only the request's deadline does: at
two seconds, one client resending a crashing request would keep a worker restarting for good. The
deadline also bounds how far crashes push the next failure's answer, so a burst of them delays no
later failure by more than a request timeout.
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

    def delay(self, cost: float, deadline: float | None, *, capped: bool = True) -> float:
        """Seconds to hold the answer of a request that failed after costing others ``cost`` s;
        ``capped`` False for a crash, which only its deadline bounds (``max_delay`` if it has none)."""
        if cost <= 0 or self.share >= 1:
            return 0.0
        now = self._clock()
        limit = deadline if not capped and deadline is not None else now + self.max_delay
        release = min(max(now, self._next) + cost / self.share, limit)
        self._next = release
        if deadline is not None:
            release = min(release, deadline - _DEADLINE_MARGIN)
        return max(0.0, release - now)
