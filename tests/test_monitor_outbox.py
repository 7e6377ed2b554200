"""The monitoring export's queue and thread (``Outbox``) and its front (``Monitor``): real threads
and a sink of the test's own that records each call, stalls on a ``threading.Event`` or fails as
told (the outbox's contract is the ``sinks.Sink`` protocol, so this is the outbox's own code under
test, not a mock of a dependency). The sinks themselves are tested in their own modules."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.events import EventShaper, Masking
from scorer_core.monitor.monitor import Monitor
from scorer_core.monitor.outbox import Outbox
from scorer_core.monitor.queue import BATCH_REQUESTS, Limits
from scorer_core.monitor.relay import Relay
from scorer_core.monitor.sinks import Event, SinkError
from scorer_core.service.scored import ScoredRequest
from tests.conftest import wait_for
from tests.monitor_records import rows_frame, scored

#: Decides one call's failure from its number (1 for the first) and its events; None delivers.
Failure = Callable[[int, Sequence[Event]], Exception | None]


class Recorder:
    """A sink that records each ``send`` (when, and which events), holds every send while
    ``gate`` is clear, and fails a call when ``fail`` says so."""

    name: ClassVar[str] = "test"

    def __init__(self, fail: Failure | None = None, gate: threading.Event | None = None) -> None:
        self._lock = threading.Lock()
        self._fail = fail
        self.gate = gate
        self.calls: list[tuple[float, list[Event]]] = []
        self.delivered: list[Event] = []
        self.closed: list[float] = []

    def send(self, events: Sequence[Event], timeout: float) -> None:
        with self._lock:
            self.calls.append((time.monotonic(), list(events)))
            number = len(self.calls)
        if self.gate is not None:
            self.gate.wait()
        error = self._fail(number, events) if self._fail is not None else None
        if isinstance(error, SinkError) and error.undelivered is not None:
            held = {id(event) for event in (*error.undelivered, *error.rejected)}
            self._record([event for event in events if id(event) not in held])
        if error is not None:
            raise error
        self._record(events)

    def close(self, timeout: float) -> None:
        self.closed.append(time.monotonic())

    def _record(self, events: Sequence[Event]) -> None:
        with self._lock:
            self.delivered.extend(events)

    def ids(self) -> list[str]:
        with self._lock:
            return [event["id"] for event in self.delivered]

    def call_times(self) -> list[float]:
        with self._lock:
            return [when for when, _ in self.calls]


class IdleRecorder(Recorder):
    """A sink with an ``idle`` method, as the file sink has (rotation by age)."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.idles: list[float] = []
        self._broken = broken

    def idle(self) -> None:
        self.idles.append(time.monotonic())
        if self._broken:
            raise RuntimeError("a bug in idle")


@pytest.fixture
def outbox() -> Iterator[Callable[..., Outbox]]:
    """Make an outbox (not started) for a sink; every one is closed at the end, its gate opened."""
    made: list[Outbox] = []

    def make(sink: Recorder, requests: int = 10_000, rows: int = 1_000_000, retry: float = 60.0) -> Outbox:
        box = Outbox(sink, EventShaper(Masking()), Limits(requests, rows, retry))
        made.append(box)
        return box

    yield make
    for box in made:
        gate = getattr(box.sink, "gate", None)
        if gate is not None:
            gate.set()
        box.close(5.0)


def held(box: Outbox, sink: Recorder, first: ScoredRequest | None = None) -> None:
    """Start ``box`` with one request and wait until its thread is held in the sink's send."""
    box.offer(first if first is not None else scored("first"))
    box.start()
    wait_for(lambda: sink.calls, 10, "the first send")


def same_rows(count: int, prefix: str = "r") -> list[ScoredRequest]:
    """``count`` one-row requests sharing their columns, so that making them costs little."""
    frame, outputs = rows_frame(1), {"score": np.zeros(1)}
    return [scored(f"{prefix}{i}", frame=frame, outputs=outputs) for i in range(count)]


@pytest.mark.serial
def test_a_stalled_sink_never_blocks_an_offer_and_loses_nothing_up_to_the_bound(outbox):
    gate = threading.Event()
    sink = Recorder(gate=gate)
    box = outbox(sink, requests=1000)
    held(box, sink)
    offered = same_rows(20_000)

    started = time.monotonic()
    for request in offered:
        box.offer(request)
    took = time.monotonic() - started

    assert took < 2.0, f"20,000 offers to a full queue took {took:.2f} s"
    assert box.depth == 1000
    # The thread holds only the first request, so the queue kept exactly the first 1000 offered.
    assert box.tally.dropped == 19_000
    assert box.tally.sent == 0

    gate.set()
    wait_for(lambda: box.tally.sent == 1001, 30, "the queue delivered")
    assert sink.ids() == ["first"] + [f"r{i}" for i in range(1000)]
    assert box.tally.sent + box.tally.dropped == 20_001
    assert box.tally.failed == 0
    assert box.depth == 0


def test_under_load_a_stall_drops_at_most_what_overflowed(outbox):
    # The thread takes up to BATCH_REQUESTS at a time, so while it is held it may hold a batch
    # beside the full queue: what is dropped is at most the rest.
    gate = threading.Event()
    sink = Recorder(gate=gate)
    box = outbox(sink, requests=500)
    box.start()
    offered = same_rows(5000)
    for request in offered:
        box.offer(request)
    assert box.depth <= 500
    gate.set()
    wait_for(lambda: box.tally.sent + box.tally.dropped == 5000, 30, "every event counted")
    assert box.tally.dropped >= 5000 - 500 - BATCH_REQUESTS
    assert box.tally.failed == 0
    # Each kept event delivered once, in the order offered (the queue is first in, first out).
    numbers = [int(request_id[1:]) for request_id in sink.ids()]
    assert numbers == sorted(set(numbers)) and len(numbers) == box.tally.sent
    assert numbers[:500] == list(range(500))  # the queue's first fill, before any was dropped


def test_the_rows_bound_drops_requests_by_their_rows_not_their_count(outbox):
    gate = threading.Event()
    sink = Recorder(gate=gate)
    box = outbox(sink, requests=1000, rows=100)
    held(box, sink)

    for request_id, rows in [("a", 60), ("b", 30), ("c", 20), ("d", 10), ("e", 1)]:
        box.offer(scored(request_id, rows))
    assert box.depth == 3  # a, b and d: 100 rows; c and e did not fit
    assert box.tally.dropped == 2

    gate.set()
    wait_for(lambda: box.tally.sent == 4, 10, "the queue delivered")
    assert sink.ids() == ["first", "a", "b", "d"]
    assert [len(event["request"]["rows"]) for event in sink.delivered] == [1, 60, 30, 10]


def test_a_request_larger_than_the_rows_bound_is_taken_when_the_queue_is_empty(outbox):
    gate = threading.Event()
    sink = Recorder(gate=gate)
    box = outbox(sink, requests=1000, rows=100)
    held(box, sink)

    box.offer(scored("large", 1500))
    assert box.depth == 1
    box.offer(scored("one", 1))
    box.offer(scored("larger", 2500))  # dropped: three events' worth
    assert box.tally.dropped == 1 + 3

    gate.set()
    wait_for(lambda: box.tally.sent == 3, 10, "the queue delivered")
    assert [(event["id"], event["part"], len(event["request"]["rows"])) for event in sink.delivered] == [
        ("first", 1, 1),
        ("large", 1, 1000),
        ("large", 2, 500),
    ]


def test_a_sink_that_recovers_gets_everything_after_growing_pauses(outbox):
    sink = Recorder(fail=lambda number, events: SinkError("down") if number <= 4 else None)
    box = outbox(sink)
    for request in same_rows(5):
        box.offer(request)
    box.start()

    wait_for(lambda: box.tally.sent == 5, 30, "delivery after the sink recovered")
    assert sink.ids() == [f"r{i}" for i in range(5)]
    assert (box.tally.failed, box.tally.dropped) == (0, 0)
    times = sink.call_times()
    assert len(times) == 5
    pauses = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Each pause at least doubles the one before: 0.1, 0.2, 0.4, 0.8 s.
    for number, pause in enumerate(pauses):
        assert pause >= 0.1 * 2**number * 0.95, pauses


@pytest.mark.serial
@pytest.mark.parametrize("error", [SinkError("down"), RuntimeError("a bug in the sink")], ids=["sink", "bug"])
def test_a_failing_sink_counts_events_failed_after_the_retry_time_and_serves_later_ones(outbox, error):
    down = threading.Event()
    down.set()
    sink = Recorder(fail=lambda number, events: error if down.is_set() else None)
    box = outbox(sink, retry=0.5)
    box.offer(scored("lost"))
    started = time.monotonic()
    box.start()

    wait_for(lambda: box.tally.failed == 1, 10, "the event counted failed")
    took = time.monotonic() - started
    assert took < 0.5 + 2.0, took  # about the retry time: 0.5 s, and generous for a loaded machine
    assert len(sink.calls) >= 2  # retried before giving up
    assert (box.tally.sent, box.tally.dropped) == (0, 0)

    down.clear()
    box.offer(scored("later"))
    wait_for(lambda: box.tally.sent == 1, 10, "a later event delivered")
    assert sink.ids() == ["later"]
    assert box.tally.failed == 1


def test_only_the_events_a_sink_did_not_deliver_are_retried(outbox):
    def fail(number: int, events: Sequence[Event]) -> Exception | None:
        if number == 1:
            return SinkError("two refused", undelivered=[events[2], events[4]])
        return None

    sink = Recorder(fail=fail)
    box = outbox(sink)
    for request in same_rows(6):
        box.offer(request)
    box.start()

    wait_for(lambda: box.tally.sent == 6, 10, "every event delivered")
    assert [[event["id"] for event in events] for _, events in sink.calls] == [
        [f"r{i}" for i in range(6)],
        ["r2", "r4"],
    ]
    assert sorted(sink.ids()) == [f"r{i}" for i in range(6)]  # each exactly once
    assert (box.tally.sent, box.tally.failed, box.tally.dropped) == (6, 0, 0)


def test_a_sink_error_naming_no_undelivered_event_is_a_delivery(outbox):
    sink = Recorder(fail=lambda number, events: SinkError("all sent after all", undelivered=[]))
    box = outbox(sink)
    for request in same_rows(3):
        box.offer(request)
    box.start()
    wait_for(lambda: box.tally.sent == 3, 10, "every event delivered")
    box.close(5.0)
    assert len(sink.calls) == 1  # nothing left to retry: no empty batch sent again
    assert (box.tally.sent, box.tally.failed, box.tally.dropped) == (3, 0, 0)


def test_close_flushes_what_is_queued_to_a_healthy_sink_then_closes_it(outbox):
    gate = threading.Event()
    sink = Recorder(gate=gate)
    box = outbox(sink)
    held(box, sink)
    for request in same_rows(50):
        box.offer(request)
    gate.set()
    box.close(30.0)

    assert box.tally.sent == 51
    assert (box.tally.dropped, box.tally.failed, box.depth) == (0, 0, 0)
    assert len(sink.closed) == 1 and sink.closed[0] >= max(sink.call_times())
    box.offer(scored("late"))
    assert box.tally.dropped == 1
    assert len(sink.ids()) == 51


@pytest.mark.serial
def test_close_gives_up_on_a_stalled_sink_within_its_timeout(outbox):
    gate = threading.Event()
    sink = Recorder(gate=gate)
    box = outbox(sink)
    held(box, sink)
    for request in same_rows(10):
        box.offer(request)

    started = time.monotonic()
    box.close(0.5)
    took = time.monotonic() - started
    assert 0.45 <= took < 0.5 + 2.0, took
    assert box.tally.dropped == 10  # the queue; the request in the sink's hands is not yet known
    assert len(sink.closed) == 1
    box.offer(scored("late"))
    assert box.tally.dropped == 11

    gate.set()  # the stalled send returns at last: its event was delivered
    wait_for(lambda: box.tally.sent == 1, 10, "the held send counted")
    assert box.tally.sent + box.tally.dropped + box.tally.failed == 12


@pytest.mark.serial
def test_close_during_a_retry_pause_stops_retrying_and_sends_nothing_after(outbox):
    # A failing sink waits up to 5 s between tries: a stop must not wait that out, nor may the
    # thread wake after the sink was closed and send to it.
    sink = Recorder(fail=lambda number, events: SinkError("down"))
    box = outbox(sink, retry=60.0)
    box.offer(scored("pending"))
    box.start()
    wait_for(lambda: len(sink.calls) >= 5, 10, "five tries")  # the next pause is 1.6 s

    started = time.monotonic()
    box.close(0.3)
    took = time.monotonic() - started
    wait_for(lambda: box.tally.dropped + box.tally.failed == 1, 10, "the pending event counted")

    assert took < 0.3 + 2.0, took
    assert len(sink.closed) == 1
    assert max(sink.call_times()) < sink.closed[0], "sent to the sink after it was closed"
    assert box.tally.dropped == 1  # left at the stop, as the queue's leftovers are
    assert box.tally.sent == 0


def test_an_idle_sink_is_told_about_once_a_second(outbox):
    sink = IdleRecorder()
    box = outbox(sink)
    box.start()
    wait_for(lambda: len(sink.idles) >= 2, 10, "two idle calls")
    assert sink.idles[1] - sink.idles[0] >= 0.95
    box.offer(scored("after"))
    wait_for(lambda: box.tally.sent == 1, 10, "an event delivered")


def test_a_sink_failing_while_idle_keeps_its_thread(outbox):
    sink = IdleRecorder(broken=True)
    box = outbox(sink)
    box.start()
    wait_for(lambda: len(sink.idles) >= 1, 10, "an idle call")
    box.offer(scored("after"))
    wait_for(lambda: box.tally.sent == 1, 10, "an event delivered")
    assert sink.ids() == ["after"]


# Monitor: sampling, failures, settings, metrics.


def request_ids(count: int) -> list[str]:
    """Ids shaped as the server makes them (hex), fixed for the test."""
    return [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(count)]


@pytest.mark.parametrize("rate", [0.01, 0.3, 0.9])
def test_the_sample_keeps_its_rate_of_ids_and_the_same_ids_each_time(rate):
    monitor = Monitor([], sample=rate)
    ids = request_ids(10_000)
    kept = [monitor.kept(request_id) for request_id in ids]
    assert abs(sum(kept) / len(ids) - rate) < 0.02
    assert [Monitor([], sample=rate).kept(request_id) for request_id in ids] == kept
    # Sequential ids of a client's own making are sampled at the rate too.
    sequential = [monitor.kept(f"order-{i}") for i in range(10_000)]
    assert abs(sum(sequential) / 10_000 - rate) < 0.02


def test_a_sample_of_0_keeps_none_and_of_1_keeps_all(outbox):
    ids = request_ids(2000)
    assert not any(Monitor([], sample=0).kept(request_id) for request_id in ids)
    assert all(Monitor([], sample=1).kept(request_id) for request_id in ids)

    box = outbox(Recorder())
    none = Monitor([box], sample=0)
    for request_id in ids[:100]:
        none.offer(scored(request_id))
    assert box.depth == 0 and box.tally.dropped == 0


def test_failures_false_exports_only_answered_requests(outbox):
    answered, everything = outbox(Recorder()), outbox(Recorder())
    for monitor in (Monitor([answered], failures=False), Monitor([everything])):
        for status in (200, 400, 500, 499, 200):
            monitor.offer(scored(f"s{status}", status=status, error=None if status == 200 else "no"))
    assert answered.depth == 2
    assert everything.depth == 5


@pytest.fixture
def monitor_env(monkeypatch, tmp_path) -> Callable[..., Monitor | None]:
    """``Monitor.from_settings`` with these SCORER_MONITOR_* variables (names without the prefix)."""

    def build(**variables: str) -> Monitor | None:
        for name, value in variables.items():
            monkeypatch.setenv(f"SCORER_MONITOR{'_' if name else ''}{name}", value)
        return Monitor.from_settings(load_settings())

    return build


def test_monitoring_is_off_unless_a_sink_is_named(monitor_env):
    assert monitor_env() is None
    assert monitor_env(**{"": ""}) is None


@pytest.mark.parametrize(
    ("headers", "named", "allowed"),
    [
        ("Authorization", "authorization", None),
        ("traceparent", "traceparent", None),
        ("X-Tenant, Cookie", "cookie", "x-tenant"),
        ("x-api-key,tracestate", "x-api-key, tracestate", None),
    ],
)
def test_credential_and_tracing_headers_are_refused_by_name(monitor_env, tmp_path, headers, named, allowed):
    with pytest.raises(ConfigurationError, match="SCORER_MONITOR_HEADERS") as refused:
        monitor_env(**{"": "file", "DIR": str(tmp_path), "HEADERS": headers})
    assert named in str(refused.value)
    if allowed is not None:
        assert allowed not in str(refused.value)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"HASH_FIELDS": "email"}, "SCORER_MONITOR_HASH_FIELDS needs a key"),
        ({"HASH_FIELDS": "email", "HASH_KEY": "short-key"}, "at least 16 characters"),
        (
            {"HASH_KEY": "k" * 20, "HASH_KEY_FILE": "key"},
            "SCORER_MONITOR_HASH_KEY or SCORER_MONITOR_HASH_KEY_FILE",
        ),
        ({"HASH_FIELDS": "email", "HASH_KEY_FILE": "missing"}, "SCORER_MONITOR_HASH_KEY_FILE cannot be read"),
    ],
)
def test_a_hash_key_missing_short_or_twice_given_stops_start_up(monitor_env, tmp_path, variables, message):
    (tmp_path / "key").write_text("k" * 20)
    if "HASH_KEY_FILE" in variables:
        variables = {**variables, "HASH_KEY_FILE": str(tmp_path / variables["HASH_KEY_FILE"])}
    with pytest.raises(ConfigurationError, match=message) as refused:
        monitor_env(**{"": "file", "DIR": str(tmp_path / "events"), **variables})
    assert "k" * 20 not in str(refused.value)


def test_an_unknown_sink_is_refused_by_the_settings(monitor_env):
    with pytest.raises(
        ConfigurationError, match=r"SCORER_MONITOR='file,pigeon'.*expected sinks among.*pigeon"
    ):
        monitor_env(**{"": "file,pigeon"})


def test_the_settings_build_a_file_monitor_that_masks_as_told(monitor_env, tmp_path):
    (tmp_path / "key").write_text("a-key-of-20-chars-xx\n")
    monitor = monitor_env(
        **{
            "": "file",
            "DIR": str(tmp_path / "events"),
            "SAMPLE": "1",
            "FAILURES": "false",
            "HEADERS": "X-Tenant",
            "DROP_FIELDS": "x",
            "HASH_FIELDS": "name",
            "HASH_KEY_FILE": str(tmp_path / "key"),
        }
    )
    assert monitor is not None
    [relay] = monitor.channels  # the sinks run in the export process behind it
    assert isinstance(relay, Relay)

    monitor.start()
    monitor.offer(scored("kept", 2, headers={"x-tenant": "acme", "cookie": "secret"}))
    monitor.offer(scored("refused", 2, status=400, error="bad"))
    monitor.close(10.0)

    [part] = (tmp_path / "events").glob("events-*.jsonl")
    [event] = [orjson.loads(line) for line in part.read_bytes().splitlines()]
    assert event["id"] == "kept" and event["headers"] == {"x-tenant": "acme"}
    assert event["request"]["fields"] == ["name"]
    assert event["request"]["rows"][0] == [hmac.new(b"a-key-of-20-chars-xx", b"n0", "sha256").hexdigest()]
    assert relay.snapshots()["file"].sent == 1


def metrics(monitor: Monitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The monitor's samples as Prometheus renders them, by name and labels."""
    registry = CollectorRegistry()
    registry.register(monitor.collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Other(Recorder):
    name: ClassVar[str] = "other"


def test_the_metrics_count_each_sinks_events_depth_and_delivery_delay(outbox):
    gate = threading.Event()
    stalled, failing = Recorder(gate=gate), Other(fail=lambda number, events: SinkError("down"))
    stalled_box, failing_box = outbox(stalled, requests=2), outbox(failing, retry=0.0)
    monitor = Monitor([stalled_box, failing_box])
    held(stalled_box, stalled, scored("first"))
    failing_box.start()
    for request_id in ("a", "b", "c"):
        monitor.offer(scored(request_id))
    wait_for(lambda: failing_box.tally.failed == 3, 10, "the failing sink's events counted")

    def value(name: str, **labels: str) -> float:
        return metrics(monitor)[(name, tuple(sorted(labels.items())))]

    assert value("scorer_monitor_events_total", sink="test", outcome="dropped") == 1  # "c"
    assert value("scorer_monitor_events_total", sink="test", outcome="sent") == 0
    assert value("scorer_monitor_queue_depth", sink="test") == 2
    assert value("scorer_monitor_events_total", sink="other", outcome="failed") == 3
    assert value("scorer_monitor_events_total", sink="other", outcome="sent") == 0
    assert value("scorer_monitor_queue_depth", sink="other") == 0

    gate.set()
    wait_for(lambda: stalled_box.tally.sent == 3, 10, "the stalled sink's events delivered")
    samples = metrics(monitor)
    assert samples[("scorer_monitor_events_total", (("outcome", "sent"), ("sink", "test")))] == 3
    assert samples[("scorer_monitor_queue_depth", (("sink", "test"),))] == 0
    assert samples[("scorer_monitor_delivery_seconds_count", (("sink", "test"),))] == 3
    assert samples[("scorer_monitor_delivery_seconds_count", (("sink", "other"),))] == 0
    assert samples[("scorer_monitor_delivery_seconds_sum", (("sink", "test"),))] > 0
    buckets = [
        (labels, count)
        for (name, labels), count in samples.items()
        if name == "scorer_monitor_delivery_seconds_bucket" and ("sink", "test") in labels
    ]
    assert dict(buckets[-1][0])["le"] == "+Inf" and buckets[-1][1] == 3
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)  # cumulative
    # A second scrape reads the same histogram, not the delays again, nor lost.
    assert metrics(monitor)[("scorer_monitor_delivery_seconds_count", (("sink", "test"),))] == 3


def test_a_request_refused_before_its_rows_were_checked_is_one_event(outbox):
    sink = Recorder()
    box = outbox(sink)
    box.offer(scored("refused", frame=None, outputs=None, status=400, error="bad body"))
    box.start()
    wait_for(lambda: box.tally.sent == 1, 10, "the event delivered")
    [event] = sink.delivered
    assert (event["parts"], event["request"], event["response"]) == (1, None, None)
    assert (event["status"], event["error"]) == (400, "bad body")


def test_events_a_sink_rejects_are_failed_at_once_and_the_rest_delivered(outbox):
    def fail(number: int, events: Sequence[Event]) -> Exception | None:
        if number == 1:
            rejected = [e for e in events if e["id"] == "b"]
            return SinkError("too large", undelivered=[], rejected=rejected)
        return None

    sink = Recorder(fail)
    box = outbox(sink, retry=60.0)
    for name in "abc":
        box.offer(scored(name))
    box.start()
    wait_for(lambda: box.tally.sent + box.tally.failed == 3, 10, "every event counted")
    assert (box.tally.sent, box.tally.failed) == (2, 1)
    assert len(sink.calls) == 1  # nothing retried: a rejected event waits for nothing
    assert sorted(sink.ids()) == ["a", "c"]
