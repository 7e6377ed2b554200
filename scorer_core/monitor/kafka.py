"""``KafkaSink``: one Kafka record per event, produced with librdkafka (confluent-kafka).

A record's key is the request id, so that the events of one request (its parts) land on one
partition, in order; its value is the event's JSON, with a ``content-type: application/json``
header. Delivery is at least once: ``send`` produces the batch, then waits for every record's
delivery report (the broker's acknowledgement, or librdkafka's error), and names exactly the
events that were not acknowledged. A record is never produced twice by this sink while the first
copy may still be delivered: librdkafka bounds each record's life by ``message.timeout.ms``, and
what was not yet sent when ``send``'s time is up is purged (never sent) before ``send`` returns.

Construction never waits on a broker (librdkafka connects in its own threads), so a broker down
when the server starts costs the start nothing. confluent-kafka is imported only when a sink is
built: the module imports without it, and ``SCORER_MONITOR=kafka`` without it stops start-up with
the command that installs it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.sinks import Event, SinkError, event_bytes

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

__all__ = ["DEFAULTS", "DELIVERY_SECONDS", "KafkaSink", "parse_properties"]

log = logging.getLogger(__name__)

#: Longest librdkafka keeps trying to deliver a record (its ``message.timeout.ms``): the
#: outbox's longest ``send``, so that a record still unacknowledged when ``send``'s time is up
#: gets its report soon after, and is then the outbox's to retry.
DELIVERY_SECONDS = 10.0
#: librdkafka times records out in a scan once a second: a report may come that much late.
_REPORT_SLACK = 2.0
#: How often the client's thread wakes to serve librdkafka's callbacks when nothing happens.
_POLL_SECONDS = 0.2

#: Producer properties the sink sets unless SCORER_MONITOR_KAFKA_CONFIG does (docs/monitoring.md).
DEFAULTS: Mapping[str, str] = {
    # A record counts as delivered once every in-sync replica has it: a broker lost just after
    # acknowledging loses no event.
    "acks": "all",
    # librdkafka's own retries (a lost acknowledgement) write no duplicates, and keep a
    # partition's records in order.
    "enable.idempotence": "true",
    # Events are JSON with the same field names in every record: they compress well. LZ4 is
    # cheap on the CPU the scorer shares, and every Kafka since 0.10 and the managed services read it.
    "compression.type": "lz4",
    # The outbox hands over a batch at once: a few milliseconds let librdkafka pack it into few
    # requests.
    "linger.ms": "5",
    # A broker back up is found within a second (librdkafka's default backs off to 10 s).
    "reconnect.backoff.max.ms": "1000",
    "client.id": "scorer-core-monitor",
}

#: Properties SCORER_MONITOR_KAFKA_CONFIG may not set, and what to do instead.
_RESERVED = {
    "bootstrap.servers": "set SCORER_MONITOR_KAFKA_BOOTSTRAP instead",
    "metadata.broker.list": "set SCORER_MONITOR_KAFKA_BOOTSTRAP instead",
    "sasl.password": "set SCORER_MONITOR_KAFKA_PASSWORD instead: a secret never sits in a plain setting",
    "message.timeout.ms": "the sink bounds it by its send timeout",
    "delivery.timeout.ms": "the sink bounds it by its send timeout",
}
#: Properties that hold Python callables in confluent-kafka's configuration, never text.
_CALLBACKS = frozenset({"logger", "on_delivery", "error_cb", "stats_cb", "throttle_cb", "oauth_cb"})
_PROPERTY = re.compile(r"[a-z0-9][a-z0-9._-]*")
#: Kafka's rule for topic names.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: librdkafka's code for "all brokers are down" (confluent_kafka.KafkaError._ALL_BROKERS_DOWN).
_ALL_BROKERS_DOWN = -187
_HEADERS: list[tuple[str, str | bytes | None]] = [("content-type", b"application/json")]


def parse_properties(text: str) -> dict[str, str]:
    """SCORER_MONITOR_KAFKA_CONFIG's ``key=value`` pairs, separated by commas.

    A mistake stops start-up naming the variable, and the item by its position and key only:
    a value may be a secret (a TLS key's password), and a misplaced comma splits one in two."""
    found: dict[str, str] = {}
    items = [item for item in text.split(",") if item.strip()]
    for position, item in enumerate(items, start=1):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not _PROPERTY.fullmatch(key):
            raise ConfigurationError(
                f"SCORER_MONITOR_KAFKA_CONFIG: item {position} is not key=value (expected librdkafka "
                "properties separated by commas, e.g. security.protocol=SASL_SSL,sasl.mechanism=PLAIN)"
            )
        if key in _RESERVED:
            raise ConfigurationError(f"SCORER_MONITOR_KAFKA_CONFIG may not set {key}: {_RESERVED[key]}")
        if key in _CALLBACKS or key.endswith("_cb"):
            raise ConfigurationError(
                f"SCORER_MONITOR_KAFKA_CONFIG may not set {key}: properties only, not callbacks"
            )
        if key in found:
            raise ConfigurationError(f"SCORER_MONITOR_KAFKA_CONFIG sets {key} twice")
        found[key] = value.strip()
    return found


def _producer_class() -> type[Producer]:
    try:
        from confluent_kafka import Producer
    except ImportError:
        raise ConfigurationError(
            "SCORER_MONITOR=kafka needs confluent-kafka: pip install 'scorer-core[kafka]'"
        ) from None
    return Producer


class KafkaSink:
    """Events to ``topic``, through a producer built from ``config`` (librdkafka's properties,
    ``bootstrap.servers`` among them); ``delivery_seconds`` bounds each record's delivery."""

    name: ClassVar[str] = "kafka"

    def __init__(
        self, topic: str, config: Mapping[str, str], *, delivery_seconds: float = DELIVERY_SECONDS
    ) -> None:
        self.topic = topic
        self._config = {**config, "message.timeout.ms": str(max(1, round(delivery_seconds * 1000)))}
        self._delivery_seconds = delivery_seconds
        self._client = _Client(self._config)
        #: Whether the client failed a send: the next send builds a new one (see ``_fresh``).
        self._stale = False
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSink:
        """The sink SCORER_MONITOR_KAFKA_* describe; ``ConfigurationError`` naming the variable
        when one is missing or wrong, or when confluent-kafka is not installed."""
        bootstrap = (settings.monitor_kafka_bootstrap or "").strip()
        if not bootstrap:
            raise ConfigurationError(
                "SCORER_MONITOR=kafka needs SCORER_MONITOR_KAFKA_BOOTSTRAP: the brokers, host:port "
                "separated by commas"
            )
        topic = (settings.monitor_kafka_topic or "").strip()
        if not topic:
            raise ConfigurationError(
                "SCORER_MONITOR=kafka needs SCORER_MONITOR_KAFKA_TOPIC: the topic to write to"
            )
        if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
            raise ConfigurationError(
                f"SCORER_MONITOR_KAFKA_TOPIC={topic!r} is not a Kafka topic name: up to 249 letters, "
                "digits, '.', '_' and '-'"
            )
        config = {
            "bootstrap.servers": bootstrap,
            **DEFAULTS,
            **parse_properties(settings.monitor_kafka_config),
        }
        if settings.monitor_kafka_password is not None:
            config["sasl.password"] = settings.monitor_kafka_password.get_secret_value()
        return cls(topic, config)

    def send(self, events: Sequence[Event], timeout: float) -> None:
        """Produce one record per event and wait for every acknowledgement; ``SinkError`` with
        the events not acknowledged. Takes ``timeout`` seconds at most, or, when records are
        in flight to a broker that does not answer, until librdkafka gives them up
        (``delivery_seconds`` more at most)."""
        if self._closed:
            raise SinkError("the Kafka sink is closed", events)
        deadline = time.monotonic() + timeout
        client = self._fresh()
        delivery = _Delivery()
        refused: dict[int, str] = {}
        for index, event in enumerate(events):
            why = client.produce(self.topic, event, delivery, deadline)
            if why is not None:
                # librdkafka's queue stayed full until the deadline, or it refused the record:
                # none of the rest was produced, so none of it can arrive later.
                refused.update((id(later), why) for later in events[index:])
                break
        if not delivery.wait(deadline):
            # Records not yet sent to a broker are dropped from librdkafka's queues, reported
            # at once, and never sent; those in flight get their report when the broker answers
            # or their message.timeout.ms passes.
            client.purge_queued()
            delivery.wait(time.monotonic() + self._delivery_seconds + _REPORT_SLACK)
        failed, unreported = delivery.outcome()
        if unreported:
            # No report, even past message.timeout.ms: librdkafka is not expected to do this. The
            # records may still be sent, so the client is abandoned with them (purged) rather than
            # kept, and the outbox retries them: a duplicate at worst, never a loss.
            log.warning(
                "Kafka: %d records had no delivery report in time; abandoning the producer", len(unreported)
            )
            failed.update((key, "no delivery report") for key in unreported)
        failed.update(refused)
        if failed:
            # librdkafka can be left unable to deliver: an idempotent producer whose broker lost
            # its producer id (a broker restarted without its state, or one that expired it)
            # retries forever or turns fatal. A new producer costs a reconnection, once per
            # failed send.
            self._stale = True
            rejected = [event for event in events if id(event) in delivery.rejected]
            undelivered = [
                event for event in events if id(event) in failed and id(event) not in delivery.rejected
            ]
            if not undelivered:
                self._stale = False  # a record too large says nothing of the producer
            reasons = sorted(set(failed.values()))
            problem = "; ".join(reasons[:3]) + (f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else "")
            last = client.last_error
            raise SinkError(
                f"Kafka did not acknowledge {len(undelivered)} of {len(events)} events on topic "
                f"{self.topic!r}: {problem}" + (f"; the client's last error: {last}" if last else ""),
                undelivered,
                rejected,
            )

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for what is in flight, then stop the producer."""
        self._closed = True
        self._client.stop(timeout)

    def _fresh(self) -> _Client:
        """The client, or a new one after a failed send."""
        if self._stale:
            self._client.stop(0)
            self._client = _Client(self._config)
            self._stale = False
        return self._client


class _Delivery:
    """The delivery reports of one ``send``'s records, by event."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        #: The records produced and not reported yet, by ``id`` of their event.
        self._waiting: dict[int, Event] = {}
        #: Why each record reported as failed was, by ``id`` of its event.
        self._failed: dict[int, str] = {}
        #: The failed records a retry cannot deliver (``never_delivered``), by ``id`` of their event.
        self.rejected: set[int] = set()

    def expect(self, event: Event) -> None:
        with self._lock:
            self._waiting[id(event)] = event

    def refused(self, event: Event, why: str) -> None:
        """``event``'s record was refused by the client itself (too large), and the rest go on."""
        with self._lock:
            self._failed[id(event)] = why

    def forget(self, event: Event) -> None:
        """``event``'s record was not produced after all."""
        with self._lock:
            self._waiting.pop(id(event), None)

    def report(self, event: Event, error: KafkaError | None, _message: Message) -> None:
        """librdkafka's delivery report, on the client's thread."""
        with self._lock:
            self._waiting.pop(id(event), None)
            if error is not None:
                self._failed[id(event)] = error.str()
                if error.code() in never_delivered():
                    self.rejected.add(id(event))
            if not self._waiting:
                self._lock.notify_all()

    def wait(self, deadline: float) -> bool:
        """Whether every record produced so far was reported by ``deadline``."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._waiting, max(0.0, deadline - time.monotonic()))

    def outcome(self) -> tuple[dict[int, str], dict[int, Event]]:
        """The failed records' reasons, and the records still unreported, by ``id`` of their event."""
        with self._lock:
            return dict(self._failed), dict(self._waiting)


class _LibrdkafkaLog:
    """librdkafka's log lines, at DEBUG: a broker down for an hour would otherwise log a line or
    more every second it is tried. The outbox logs a failing sink once, with the client's last
    error in the ``SinkError``."""

    def log(self, level: int, message: str, *args: Any) -> None:
        log.debug(message, *args)


class _Client:
    """One librdkafka producer and the thread that serves its callbacks (delivery reports,
    errors, log lines) as they come. Unserved, they would pile up in memory while a broker is
    down and the server idle: librdkafka queues an error and a log line for each reconnection
    attempt."""

    def __init__(self, config: Mapping[str, str]) -> None:
        producer_class = _producer_class()
        #: The last error librdkafka reported (a refused connection, a failed authentication).
        self.last_error: str | None = None
        try:
            self.producer = producer_class({**config, "error_cb": self._error, "logger": _LibrdkafkaLog()})
        except Exception as exc:  # KafkaException for a property librdkafka refuses; its text names it
            raise ConfigurationError(
                f"SCORER_MONITOR_KAFKA_CONFIG: librdkafka refuses the producer's settings: {_reason(exc)}"
            ) from None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="monitor-kafka-client", daemon=True)
        self._thread.start()

    def produce(self, topic: str, event: Event, delivery: _Delivery, deadline: float) -> str | None:
        """Queue ``event``'s record; None, or why it was not queued."""
        value = event_bytes(event)
        key = str(event["id"]).encode()
        on_delivery = functools.partial(delivery.report, event)
        delivery.expect(event)
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=on_delivery, headers=_HEADERS)
                return None
            except BufferError:
                # librdkafka's queue is full (queue.buffering.max.messages or .kbytes): the thread
                # serving reports makes room as the broker acknowledges.
                if time.monotonic() >= deadline:
                    delivery.forget(event)
                    return "librdkafka's queue stayed full"
                time.sleep(0.01)
            except Exception as exc:  # KafkaException: a record too large, a producer turned fatal
                delivery.forget(event)
                error = exc.args[0] if exc.args else None
                if getattr(error, "code", lambda: None)() in never_delivered():
                    delivery.rejected.add(id(event))
                    delivery.refused(event, _reason(exc))
                    return None
                return _reason(exc)

    def purge_queued(self) -> None:
        """Fail the records librdkafka has not sent yet (reported as purged, never sent)."""
        self.producer.purge(in_queue=True, in_flight=False, blocking=True)

    def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the records left, drop the rest, stop the thread."""
        try:
            if timeout > 0:
                self.producer.flush(timeout)
            self.producer.purge(in_queue=True, in_flight=True, blocking=True)
            self.producer.flush(0)
        finally:
            self._stopping.set()
            self._thread.join(_POLL_SECONDS * 5)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                self.producer.poll(_POLL_SECONDS)
            except Exception as exc:  # a fatal error raised through poll: the send's reports say it
                self.last_error = _reason(exc)
                time.sleep(_POLL_SECONDS)

    def _error(self, error: KafkaError) -> None:
        # "1/1 brokers are down" follows the error that says why (a refused connection): keep that.
        if self.last_error is None or error.code() != _ALL_BROKERS_DOWN:
            self.last_error = error.str()


@functools.cache
def never_delivered() -> frozenset[int]:
    """The error codes of a record no retry can deliver: too large for the broker or the client,
    refused as invalid, or a topic the producer may not write."""
    from confluent_kafka import KafkaError

    names = (
        "MSG_SIZE_TOO_LARGE",
        "_MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "TOPIC_AUTHORIZATION_FAILED",
        "TOPIC_EXCEPTION",
    )
    return frozenset(getattr(KafkaError, name) for name in names if hasattr(KafkaError, name))


def _reason(exc: Exception) -> str:
    """A confluent-kafka exception's text: its KafkaError's, without the wrapping."""
    error = exc.args[0] if exc.args else None
    text = getattr(error, "str", None)
    return str(text()) if callable(text) else str(exc)
