"""``Monitor``: which requests are exported, and to which sinks, from the operator's settings.

Built at start-up, where every mistake in the settings stops the server with the variable's name
(a monitoring setting silently ignored would lose data nobody knows is missing). ``offer`` runs on
the event loop for each request the data plane took: a hash, a comparison, and an append to the
``Relay``'s queue; the rest happens in the export process, in each sink's outbox thread.
"""

from __future__ import annotations

import importlib
import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scorer_core.config.forwarding import is_tracing_header
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.events import EventShaper, Masking
from scorer_core.monitor.outbox import DELIVERY_BUCKETS, Outbox, Snapshot
from scorer_core.monitor.queue import Limits
from scorer_core.monitor.sinks import Sink
from scorer_core.service.scored import ScoredRequest

__all__ = ["SINKS", "Channel", "Monitor", "build_sink", "exported_headers", "limits_of", "outboxes_of"]

log = logging.getLogger(__name__)

#: Headers that carry a credential: never exported, whatever SCORER_MONITOR_HEADERS says.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
_HASH_KEY_CHARS = 16


#: Each sink's class, by its name in SCORER_MONITOR: imported only when asked for (the Kafka
#: client is an extra).
SINKS = {
    "kafka": "scorer_core.monitor.kafka:KafkaSink",
    "cloudevents": "scorer_core.monitor.cloudevents:CloudEventsSink",
    "file": "scorer_core.monitor.files:FileSink",
}


def build_sink(name: str, settings: Settings) -> Sink:
    """The sink SCORER_MONITOR names, from its settings (``ConfigurationError`` when they are
    missing or wrong)."""
    if name not in SINKS:
        raise ConfigurationError(f"SCORER_MONITOR names an unknown sink {name!r}")
    module, _, cls = SINKS[name].partition(":")
    sink: Sink = getattr(importlib.import_module(module), cls).from_settings(settings)
    return sink


def _names(configured: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in configured.split(",") if part.strip()))


def exported_headers(settings: Settings) -> list[str]:
    names = [name.lower() for name in _names(settings.monitor_headers)]
    refused = [name for name in names if name in CREDENTIAL_HEADERS or is_tracing_header(name)]
    if refused:
        raise ConfigurationError(
            f"SCORER_MONITOR_HEADERS names {', '.join(refused)}: credentials and tracing headers are "
            "never exported"
        )
    return names


def _masking(settings: Settings) -> Masking:
    hashed = frozenset(_names(settings.monitor_hash_fields))
    key = settings.monitor_hash_key.get_secret_value() if settings.monitor_hash_key is not None else None
    if settings.monitor_hash_key_file is not None:
        if key is not None:
            raise ConfigurationError("set SCORER_MONITOR_HASH_KEY or SCORER_MONITOR_HASH_KEY_FILE, not both")
        try:
            key = settings.monitor_hash_key_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigurationError(f"SCORER_MONITOR_HASH_KEY_FILE cannot be read: {exc.strerror}") from None
    if hashed and key is None:
        raise ConfigurationError(
            "SCORER_MONITOR_HASH_FIELDS needs a key: set SCORER_MONITOR_HASH_KEY or "
            "SCORER_MONITOR_HASH_KEY_FILE"
        )
    if key is not None and len(key) < _HASH_KEY_CHARS:
        raise ConfigurationError(f"the monitoring hash key must be at least {_HASH_KEY_CHARS} characters")
    return Masking(frozenset(_names(settings.monitor_drop_fields)), hashed, key.encode() if key else None)


class Channel(Protocol):
    """Where the monitor puts the requests it keeps: an ``Outbox`` (one sink, in this process),
    or a ``Relay`` (every sink, in the export process)."""

    def offer(self, scored: ScoredRequest) -> None: ...

    def start(self) -> None: ...

    def close(self, timeout: float) -> None: ...

    def snapshots(self) -> dict[str, Snapshot]: ...


def limits_of(settings: Settings) -> Limits:
    return Limits(settings.monitor_queue_size, settings.monitor_queue_rows, settings.monitor_retry_seconds)


def outboxes_of(settings: Settings) -> list[Outbox]:
    """An outbox for each sink SCORER_MONITOR names, with the events' masking and headers:
    ``ConfigurationError`` naming the setting when one is missing or wrong."""
    shaper = EventShaper(_masking(settings), exported_headers(settings))
    limits = limits_of(settings)
    return [Outbox(build_sink(name, settings), shaper, limits) for name in settings.monitor_sinks]


class Monitor:
    """Sampling, and the channels the kept requests go to."""

    def __init__(self, channels: Sequence[Channel], *, sample: float = 1.0, failures: bool = True) -> None:
        self.channels = tuple(channels)
        self._sample = sample
        self._failures = failures
        #: A request id is kept when its CRC-32 is below this.
        self._threshold = int(sample * 2**32)
        self.collector = _MonitorMetrics(self.channels)

    @classmethod
    def from_settings(cls, settings: Settings) -> Monitor | None:
        """The monitor SCORER_MONITOR asks for, or None when it is off. Its sinks run in an
        export process of their own (``relay``); they are built here once too, and closed,
        so that a mistake in their settings stops the server's start-up, naming the setting."""
        sinks = settings.monitor_sinks
        if not sinks:
            return None
        for outbox in outboxes_of(settings):
            outbox.sink.close(0)
        from scorer_core.monitor.relay import Relay

        relay = Relay(settings, sinks, exported_headers(settings), limits_of(settings))
        log.info(
            "Monitoring export to %s (sample %g%s)",
            ", ".join(sinks),
            settings.monitor_sample,
            "" if settings.monitor_failures else ", answered requests only",
        )
        return cls([relay], sample=settings.monitor_sample, failures=settings.monitor_failures)

    def start(self) -> None:
        for channel in self.channels:
            channel.start()

    def kept(self, request_id: str) -> bool:
        """Whether the sample keeps this request: the same answer for the same id, always."""
        if self._sample >= 1:
            return True
        return zlib.crc32(request_id.encode()) < self._threshold

    @property
    def observer(self) -> Callable[[ScoredRequest], None]:
        """What the data plane tells of each request: ``offer``, or, when every request is kept
        and there is one channel (the usual case), that channel's own ``offer``, one call less
        on the event loop for each request."""
        if self._sample >= 1 and self._failures and len(self.channels) == 1:
            return self.channels[0].offer
        return self.offer

    def offer(self, scored: ScoredRequest) -> None:
        """Sampling, then each channel's ``offer``: on the event loop, so it never waits."""
        if scored.status != 200 and not self._failures:
            return
        if not self.kept(scored.request_id):
            return
        for channel in self.channels:
            channel.offer(scored)

    def close(self, timeout: float) -> None:
        """Flush every sink, each within ``timeout`` seconds (one after another: a stopping
        server has its grace; blocking here is in a thread, off the event loop)."""
        for channel in self.channels:
            channel.close(timeout)


class _MonitorMetrics(Collector):
    """``scorer_monitor_*``, read from the channels' snapshots when scraped."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        self._channels = channels

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "scorer_monitor_events",
            "Monitoring events by sink and outcome: sent, dropped (queue full, or left at stop), "
            "failed (not delivered after SCORER_MONITOR_RETRY_SECONDS)",
            labels=["sink", "outcome"],
        )
        depth = GaugeMetricFamily(
            "scorer_monitor_queue_depth", "Requests waiting to be exported, by sink", labels=["sink"]
        )
        delivery = HistogramMetricFamily(
            "scorer_monitor_delivery_seconds",
            "Time from a request's answer to its event's delivery, by sink",
            labels=["sink"],
        )
        for channel in self._channels:
            for name, snapshot in channel.snapshots().items():
                events.add_metric([name, "sent"], snapshot.sent)
                events.add_metric([name, "dropped"], snapshot.dropped)
                events.add_metric([name, "failed"], snapshot.failed)
                depth.add_metric([name], snapshot.depth)
                cumulative, running = [], 0
                for bound, count in zip((*DELIVERY_BUCKETS, float("inf")), snapshot.buckets, strict=True):
                    running += count
                    cumulative.append((_bound(bound), running))
                delivery.add_metric([name], cumulative, snapshot.delay_sum)
        yield events
        yield depth
        yield delivery

    def describe(self) -> Iterable[Metric]:
        return []


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
