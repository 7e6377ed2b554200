"""``Monitor``: which requests are exported, and to which sinks, from the operator's settings.

Built at start-up, where every mistake in the settings stops the server with the variable's name
(a monitoring setting silently ignored would lose data nobody knows is missing). ``offer`` runs on
the event loop for each request the data plane took: a hash, a comparison, and an append per
sink; the rest happens in each sink's outbox thread.
"""

from __future__ import annotations

import importlib
import logging
import zlib
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scorer_core.config.forwarding import is_tracing_header
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.events import EventShaper, Masking
from scorer_core.monitor.outbox import Limits, Outbox
from scorer_core.monitor.sinks import Sink
from scorer_core.service.scored import ScoredRequest

__all__ = ["SINKS", "Monitor", "build_sink"]

log = logging.getLogger(__name__)

#: Headers that carry a credential: never exported, whatever SCORER_MONITOR_HEADERS says.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
#: Upper bounds of ``scorer_monitor_delivery_seconds``.
DELIVERY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
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


def _exported_headers(settings: Settings) -> list[str]:
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


class Monitor:
    """Sampling and the outboxes of the configured sinks."""

    def __init__(self, outboxes: Sequence[Outbox], *, sample: float = 1.0, failures: bool = True) -> None:
        self.outboxes = tuple(outboxes)
        self._sample = sample
        self._failures = failures
        #: A request id is kept when its CRC-32 is below this.
        self._threshold = int(sample * 2**32)
        self.collector = _MonitorMetrics(self.outboxes)

    @classmethod
    def from_settings(cls, settings: Settings) -> Monitor | None:
        """The monitor SCORER_MONITOR asks for, or None when it is off."""
        sinks = settings.monitor_sinks
        if not sinks:
            return None
        shaper = EventShaper(_masking(settings), _exported_headers(settings))
        limits = Limits(
            settings.monitor_queue_size, settings.monitor_queue_rows, settings.monitor_retry_seconds
        )
        outboxes = [Outbox(build_sink(name, settings), shaper, limits) for name in sinks]
        log.info(
            "Monitoring export to %s (sample %g%s)",
            ", ".join(sinks),
            settings.monitor_sample,
            "" if settings.monitor_failures else ", answered requests only",
        )
        return cls(outboxes, sample=settings.monitor_sample, failures=settings.monitor_failures)

    def start(self) -> None:
        for outbox in self.outboxes:
            outbox.start()

    def kept(self, request_id: str) -> bool:
        """Whether the sample keeps this request: the same answer for the same id, always."""
        if self._sample >= 1:
            return True
        return zlib.crc32(request_id.encode()) < self._threshold

    def offer(self, scored: ScoredRequest) -> None:
        """The data plane's ``scored`` observer: on the event loop, so it never waits."""
        if scored.status != 200 and not self._failures:
            return
        if not self.kept(scored.request_id):
            return
        for outbox in self.outboxes:
            outbox.offer(scored)

    def close(self, timeout: float) -> None:
        """Flush every sink, each within ``timeout`` seconds (one after another: a stopping
        server has its grace; blocking here is in a thread, off the event loop)."""
        for outbox in self.outboxes:
            outbox.close(timeout)


class _MonitorMetrics(Collector):
    """``scorer_monitor_*``, read from the outboxes' tallies when scraped."""

    def __init__(self, outboxes: Sequence[Outbox]) -> None:
        self._outboxes = outboxes
        self._buckets: dict[str, list[int]] = {
            o.sink.name: [0] * (len(DELIVERY_BUCKETS) + 1) for o in outboxes
        }
        self._sums: dict[str, float] = {o.sink.name: 0.0 for o in outboxes}

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
        for outbox in self._outboxes:
            name = outbox.sink.name
            tally = outbox.tally
            events.add_metric([name, "sent"], tally.sent)
            events.add_metric([name, "dropped"], tally.dropped)
            events.add_metric([name, "failed"], tally.failed)
            depth.add_metric([name], outbox.depth)
            counts = self._buckets[name]
            for delay in tally.take_delays():
                self._sums[name] += delay
                counts[_bucket(delay)] += 1
            cumulative, running = [], 0
            for bound, count in zip((*DELIVERY_BUCKETS, float("inf")), counts, strict=True):
                running += count
                cumulative.append((_bound(bound), running))
            delivery.add_metric([name], cumulative, self._sums[name])
        yield events
        yield depth
        yield delivery

    def describe(self) -> Iterable[Metric]:
        return []


def _bucket(delay: float) -> int:
    for index, bound in enumerate(DELIVERY_BUCKETS):
        if delay <= bound:
            return index
    return len(DELIVERY_BUCKETS)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
