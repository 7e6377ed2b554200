"""What a sink is: something that delivers a batch of events, or says why it could not.

Retrying, back-off, bounding the queue and counting are the ``Outbox``'s, the same for every
sink; a sink only delivers. ``send`` runs in the outbox's own thread, never on the event loop, so
it may block (on a socket, a disk, a broker's acknowledgement), within ``timeout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import orjson

__all__ = ["Event", "Sink", "SinkError", "event_bytes"]

#: One event, as ``events.EventShaper`` makes it: a JSON object (docs/monitoring-event.schema.json).
Event = dict[str, Any]


class SinkError(Exception):
    """A batch (or part of one) was not delivered; the outbox retries what is ``undelivered``
    (all of the batch when None) until SCORER_MONITOR_RETRY_SECONDS have passed. ``rejected``:
    events the sink will never take, whatever the retries (a record over the broker's size
    limit, a topic the producer may not write, a receiver's 4xx): counted failed at once, so that
    they do not hold the events behind them for the whole retry time."""

    def __init__(
        self, message: str, undelivered: Sequence[Event] | None = None, rejected: Sequence[Event] = ()
    ) -> None:
        super().__init__(message)
        self.undelivered = undelivered
        self.rejected = rejected


class Sink(Protocol):
    """Where events go. ``name`` is its ``sink`` label in the metrics and SCORER_MONITOR's word."""

    name: ClassVar[str]

    def send(self, events: Sequence[Event], timeout: float) -> None:
        """Deliver ``events`` (at least once) and return, or raise ``SinkError`` naming what was
        not delivered, within about ``timeout`` seconds."""
        ...

    def close(self, timeout: float) -> None:
        """Give back connections and files, within ``timeout`` seconds; nothing is sent after."""
        ...


def event_bytes(event: Event) -> bytes:
    """An event as JSON (NaN and infinities as null, numpy values as numbers)."""
    return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
