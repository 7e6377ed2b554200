"""``Outbox``: one sink's bounded queue and the thread that empties it, in the export process
(``exporter``; the server's own queue is the ``Relay``'s; both are a ``ScoredQueue``).

Its feeder only ever appends to the queue (``offer``), under a lock held for a few
instructions; it never waits on a sink. When the queue is full (by requests, or by the rows they
hold) a new request is dropped and counted: a sink that is slow, stalled or down costs scoring
nothing, and the memory stays bounded (KServe's logger, with no bound, grew until it
was killed). The thread takes the queue's head in batches, shapes their events (typing a
batch's kept cells at once) and sends them, retrying what was not delivered with pauses from
0.1 s to 5 s until SCORER_MONITOR_RETRY_SECONDS have passed; the queue keeps filling meanwhile,
so what a sink down for a while misses is exactly what overflowed, and it is counted.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from scorer_core.monitor.events import EventShaper
from scorer_core.monitor.queue import Limits, ScoredQueue, events_of
from scorer_core.monitor.sinks import Event, Sink, SinkError
from scorer_core.service.scored import ScoredRequest

__all__ = ["DELIVERY_BUCKETS", "Outbox", "Snapshot", "Tally"]

log = logging.getLogger(__name__)

_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 5.0
#: Most seconds one ``send`` may take (a broker's acknowledgement, an HTTP answer).
SEND_TIMEOUT = 10.0
#: How often a sink is told that nothing waits (``Sink.idle``, where it has one).
IDLE_SECONDS = 1.0


#: Upper bounds of ``scorer_monitor_delivery_seconds``.
DELIVERY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class Snapshot:
    """One sink's counts at a moment, for the metrics; picklable, so that the export process can
    send its sinks' to the server's."""

    sent: int = 0
    dropped: int = 0
    failed: int = 0
    #: Requests waiting now.
    depth: int = 0
    #: Deliveries by delay: one count per ``DELIVERY_BUCKETS`` bound and one past the last.
    buckets: tuple[int, ...] = (0,) * (len(DELIVERY_BUCKETS) + 1)
    delay_sum: float = 0.0
    #: Events taken from the queue and not yet sent, failed or dropped (being sent, or retried).
    in_flight: int = 0

    def plus(self, *, dropped: int = 0, depth: int = 0) -> Snapshot:
        return dataclasses.replace(self, dropped=self.dropped + dropped, depth=self.depth + depth)

    def __add__(self, other: Snapshot) -> Snapshot:
        """Both counts together (a replaced export process's and its successor's); the depth is
        ``other``'s, the later one's."""
        return Snapshot(
            self.sent + other.sent,
            self.dropped + other.dropped,
            self.failed + other.failed,
            other.depth,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
            self.delay_sum + other.delay_sum,
            other.in_flight,
        )


class Tally:
    """What one sink did, for the metrics: events sent, dropped, failed; each delivery's delay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._buckets = [0] * (len(DELIVERY_BUCKETS) + 1)
        self._delay_sum = 0.0

    def count(self, *, sent: int = 0, dropped: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.dropped += dropped
            self.failed += failed

    def delivered(self, delays: Sequence[float]) -> None:
        """Events sent, each ``delay`` seconds after its request's answer."""
        indexes = [bisect.bisect_left(DELIVERY_BUCKETS, delay) for delay in delays]
        with self._lock:
            self.sent += len(delays)
            self._delay_sum += sum(delays)
            for index in indexes:
                self._buckets[index] += 1

    def snapshot(self, depth: int = 0) -> Snapshot:
        with self._lock:
            return Snapshot(
                self.sent, self.dropped, self.failed, depth, tuple(self._buckets), self._delay_sum
            )


class Outbox:
    """The queue between the data plane and one sink."""

    def __init__(self, sink: Sink, shaper: EventShaper, limits: Limits) -> None:
        self.sink = sink
        self.tally = Tally()
        self._shaper = shaper
        self._limits = limits
        self._queue = ScoredQueue[ScoredRequest](limits, rows_of=_rows_of)
        self._failing = False
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name=f"monitor-{sink.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting now."""
        return self._queue.depth

    def snapshots(self) -> dict[str, Snapshot]:
        """This sink's counts, by its name."""
        snapshot = self.tally.snapshot(self.depth)
        return {self.sink.name: dataclasses.replace(snapshot, in_flight=self._in_flight)}

    def offer(self, scored: ScoredRequest) -> None:
        """Queue ``scored``, or drop and count it when the queue is full; never waits."""
        dropped = self._queue.offer(scored)
        if dropped:
            self.tally.count(dropped=dropped)

    def close(self, timeout: float) -> None:
        """Take nothing more; send what is queued within ``timeout`` seconds, count what is left
        as dropped, and close the sink."""
        ends = time.monotonic() + timeout
        self._queue.close(ends)
        if self._thread.is_alive():
            self._thread.join(max(0.0, ends - time.monotonic()))
        left = self._queue.clear()
        if left:
            lost = sum(events_of(scored) for scored in left)
            self.tally.count(dropped=lost)
            log.warning(
                "Monitoring sink %s: %d events not sent within SCORER_MONITOR_FLUSH_SECONDS (%g s)",
                self.sink.name,
                lost,
                timeout,
            )
        try:
            self.sink.close(max(0.0, ends - time.monotonic()))
        except Exception:
            log.exception("Monitoring sink %s failed to close", self.sink.name)

    def _run(self) -> None:
        while True:
            batch = self._queue.take(IDLE_SECONDS)
            if batch is None:
                return
            if not batch:
                self._idle()
                continue
            try:
                events = self._shaper.shape(batch)
            except Exception:
                log.exception("Monitoring: %d requests could not be made into events", len(batch))
                self.tally.count(failed=sum(events_of(scored) for scored in batch))
                continue
            finished = {scored.request_id: scored.finished for scored in batch}
            self._in_flight = len(events)
            try:
                self._deliver(events, finished)
            finally:
                self._in_flight = 0

    def _deliver(self, events: list[Event], finished: dict[str, float]) -> None:
        """Send ``events`` until delivered, the retry time is spent, or the flush time is."""
        started = time.monotonic()
        pause = _FIRST_PAUSE
        pending = events
        while True:
            flush_until = self._queue.flush_until
            give_up = min(started + self._limits.retry_seconds, flush_until)
            if time.monotonic() >= flush_until:
                self._left_at_stop(pending)
                return
            try:
                self.sink.send(pending, min(SEND_TIMEOUT, max(0.1, give_up - time.monotonic())))
            except SinkError as exc:
                rejected = {id(event) for event in exc.rejected}
                undelivered = exc.undelivered if exc.undelivered is not None else pending
                undelivered = [event for event in undelivered if id(event) not in rejected]
                held = {id(event) for event in undelivered} | rejected
                self._delivered([e for e in pending if id(e) not in held], finished)
                if rejected:
                    self.tally.count(failed=len(rejected))
                    log.error("Monitoring sink %s refused %d events: %s", self.sink.name, len(rejected), exc)
                pending = undelivered
                if pending:
                    self._report(exc)
            except Exception as exc:  # a sink's bug must not end the thread: the queue would fill
                log.exception("Monitoring sink %s failed", self.sink.name)
                self._report(exc)
            else:
                self._delivered(pending, finished)
                pending = []
            if not pending:
                if self._failing:
                    self._failing = False
                    log.warning("Monitoring sink %s delivers again", self.sink.name)
                return
            if not self._pause(pause, started):
                if self._queue.flush_until < started + self._limits.retry_seconds:
                    self._left_at_stop(pending)
                    return
                self.tally.count(failed=len(pending))
                log.error(
                    "Monitoring sink %s: %d events failed after retrying for %.0f s",
                    self.sink.name,
                    len(pending),
                    time.monotonic() - started,
                )
                return
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _pause(self, seconds: float, started: float) -> bool:
        """Wait ``seconds`` before the next try; False, at once, when the retry time or a stop's
        flush time ends first."""
        resume = time.monotonic() + seconds
        if resume > started + self._limits.retry_seconds:
            return False
        return self._queue.pause_until(resume)

    def _left_at_stop(self, pending: Sequence[Event]) -> None:
        """The stop's flush time is spent: ``pending`` is counted dropped, as the queue's rest."""
        self.tally.count(dropped=len(pending))
        log.warning(
            "Monitoring sink %s: %d events not sent by the end of SCORER_MONITOR_FLUSH_SECONDS",
            self.sink.name,
            len(pending),
        )

    def _idle(self) -> None:
        """A sink with an ``idle`` method (the file sink's rotation by age) is called about once
        a second while nothing waits."""
        idle = getattr(self.sink, "idle", None)
        if idle is not None:
            try:
                idle()
            except Exception:
                log.exception("Monitoring sink %s failed while idle", self.sink.name)

    def _delivered(self, events: Sequence[Event], finished: dict[str, float]) -> None:
        if events:
            now = time.monotonic()
            self.tally.delivered([now - finished.get(event["id"], now) for event in events])

    def _report(self, exc: Exception) -> None:
        """Log a sink's failure once, when it starts failing, not on every retry."""
        if not self._failing:
            self._failing = True
            log.warning("Monitoring sink %s cannot deliver (retrying): %s", self.sink.name, exc)


def _rows_of(scored: ScoredRequest) -> int:
    return scored.num_rows
