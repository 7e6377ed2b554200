"""The ``kafka`` monitoring sink against a real broker speaking Kafka's protocol (Tansu,
tests/kafka_broker.py), read back with a Kafka consumer: one record per event, keyed by its
request id; a broker that is down, stalled, restarted or refusing the credentials named in a
SinkError with exactly the events it did not acknowledge, and reached again once it is back;
every configuration mistake named by its setting. Then end to end: a real ``scorer serve``
exporting every request it scores (H2O's protocol and the Open Inference Protocol, one process
or worker processes), started while its broker is down."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import pytest

from conformance.target import free_port
from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.kafka import DEFAULTS, KafkaSink
from scorer_core.monitor.sinks import Event, SinkError, event_bytes
from tests.conftest import wait_for
from tests.kafka_broker import KafkaBroker
from tests.test_monitor_http import FIELDS, PASSPHRASE, SCHEMA, SPEC, scored, typed

SECRET = "kafka-s3cret-passw0rd-9c1e"


def event(request_id: str, part: int = 1, parts: int = 1, rows: int = 1) -> Event:
    """An event as ``events.EventShaper`` makes it: a request of ``rows`` rows, answered."""
    return {
        "id": request_id,
        "part": part,
        "parts": parts,
        "received": "2026-12-06T15:00:00.250000+00:00",
        "duration_ms": 1.5,
        "model": {"id": "m-uuid", "name": "iris", "version": "m-uuid", "runtime": "mlflow"},
        "deployment": None,
        "endpoint": "score",
        "status": 200,
        "error": None,
        "headers": {},
        "request": {"fields": ["x", "kind"], "rows": [[float(i), "a"] for i in range(rows)]},
        "response": {"fields": ["y"], "rows": [[2.0 * i] for i in range(rows)]},
    }


def batch(size: int, prefix: str = "r") -> list[Event]:
    return [event(f"{prefix}-{i}") for i in range(size)]


def new_topic(broker: KafkaBroker, partitions: int = 1) -> str:
    name = f"events-{uuid.uuid4().hex[:12]}"
    broker.create_topic(name, partitions)
    return name


def sink_for(broker: KafkaBroker | str, topic: str, **config: str) -> KafkaSink:
    """A sink with the defaults SCORER_MONITOR_KAFKA_* give, and ``config`` over them."""
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap
    delivery = float(config.pop("delivery_seconds", "10"))
    return KafkaSink(topic, {"bootstrap.servers": bootstrap, **DEFAULTS, **config}, delivery_seconds=delivery)


def deliver(sink: KafkaSink, events: Sequence[Event], within: float = 60.0) -> int:
    """Send as the outbox does: what a SinkError names again, after a pause, until all is
    delivered; the number of sends it took. The events named are always the very ones sent."""
    pending = list(events)
    deadline = time.monotonic() + within
    for attempt in range(1, 1000):
        try:
            sink.send(pending, timeout=5)
            return attempt
        except SinkError as exc:
            assert exc.undelivered, exc
            sent = {id(e) for e in pending}
            assert all(id(e) in sent for e in exc.undelivered), "a SinkError named events it was not given"
            pending = list(exc.undelivered)
            assert time.monotonic() < deadline, f"not delivered within {within:g} s: {exc}"
            time.sleep(0.1)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    """One broker for the module's tests that leave it running; each test has its own topic."""
    with KafkaBroker() as running:
        yield running


@pytest.mark.slow
def test_each_event_is_one_record_keyed_by_its_request_id(broker):
    topic = new_topic(broker, partitions=3)
    sink = sink_for(broker, topic)
    # Request r-2 was large: its three parts share its id, hence its partition, in order.
    events = [event("r-0"), event("r-1", rows=3), *(event("r-2", part, 3) for part in (1, 2, 3))]
    try:
        sink.send(events, timeout=10)
    finally:
        sink.close(5)
    records = broker.records(topic, at_least=5)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (e["id"].encode(), event_bytes(e)) for e in events
    )
    assert all(r.headers == {"content-type": b"application/json"} for r in records)
    parts = [r for r in records if r.key == b"r-2"]
    assert len({r.partition for r in parts}) == 1
    assert [r.event["part"] for r in sorted(parts, key=lambda r: r.offset)] == [1, 2, 3]


@pytest.mark.slow
def test_a_batch_larger_than_librdkafkas_queue_waits_for_room_and_is_delivered(broker):
    topic = new_topic(broker)
    # 20 records at most in librdkafka's queue: producing 300 meets a full queue many times.
    sink = sink_for(broker, topic, **{"queue.buffering.max.messages": "20"})
    events = batch(300)
    try:
        sink.send(events, timeout=10)
    finally:
        sink.close(5)
    records = broker.records(topic, at_least=300)
    assert sorted(r.key for r in records) == sorted(e["id"].encode() for e in events)


@pytest.mark.slow
def test_the_settings_give_the_broker_the_topic_and_the_producer_properties(broker, monkeypatch):
    topic = new_topic(broker)
    monkeypatch.setenv("SCORER_MONITOR_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("SCORER_MONITOR_KAFKA_TOPIC", topic)
    # Every codec Tansu takes, and the producer without idempotence as some managed services want it.
    for codec in ("zstd", "gzip", "snappy", "none"):
        monkeypatch.setenv(
            "SCORER_MONITOR_KAFKA_CONFIG", f"compression.type={codec}, enable.idempotence=false,acks=1"
        )
        sink = KafkaSink.from_settings(load_settings())
        try:
            sink.send([event(f"r-{codec}")], timeout=10)
        finally:
            sink.close(5)
    records = broker.records(topic, at_least=4)
    assert sorted(r.key for r in records) == [b"r-gzip", b"r-none", b"r-snappy", b"r-zstd"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SCORER_MONITOR_KAFKA_BOOTSTRAP": None}, "needs SCORER_MONITOR_KAFKA_BOOTSTRAP"),
        ({"SCORER_MONITOR_KAFKA_BOOTSTRAP": " "}, "needs SCORER_MONITOR_KAFKA_BOOTSTRAP"),
        ({"SCORER_MONITOR_KAFKA_TOPIC": None}, "needs SCORER_MONITOR_KAFKA_TOPIC"),
        (
            {"SCORER_MONITOR_KAFKA_TOPIC": "scored requests"},
            "SCORER_MONITOR_KAFKA_TOPIC='scored requests' is not",
        ),
        ({"SCORER_MONITOR_KAFKA_TOPIC": ".."}, "SCORER_MONITOR_KAFKA_TOPIC='..' is not a Kafka topic"),
        (
            {"SCORER_MONITOR_KAFKA_CONFIG": "acks=all,lz4"},
            "SCORER_MONITOR_KAFKA_CONFIG: item 2 is not key=value",
        ),
        ({"SCORER_MONITOR_KAFKA_CONFIG": "=1"}, "SCORER_MONITOR_KAFKA_CONFIG: item 1 is not key=value"),
        (
            {"SCORER_MONITOR_KAFKA_CONFIG": f"sasl.username=scorer,sasl.password={SECRET}"},
            "may not set sasl.password: set SCORER_MONITOR_KAFKA_PASSWORD instead",
        ),
        (
            {"SCORER_MONITOR_KAFKA_CONFIG": "bootstrap.servers=elsewhere:9092"},
            "may not set bootstrap.servers: set SCORER_MONITOR_KAFKA_BOOTSTRAP instead",
        ),
        (
            {"SCORER_MONITOR_KAFKA_CONFIG": "message.timeout.ms=600000"},
            "may not set message.timeout.ms: the sink bounds it",
        ),
        ({"SCORER_MONITOR_KAFKA_CONFIG": "error_cb=print"}, "may not set error_cb: properties only"),
        ({"SCORER_MONITOR_KAFKA_CONFIG": "acks=1,acks=all"}, "SCORER_MONITOR_KAFKA_CONFIG sets acks twice"),
        (
            {"SCORER_MONITOR_KAFKA_CONFIG": "compresion.type=lz4"},
            'librdkafka refuses the producer\'s settings: No such configuration property: "compresion.type"',
        ),
        (
            {"SCORER_MONITOR_KAFKA_CONFIG": "acks=1"},  # idempotence, a default, needs acks=all
            "`acks` must be set to `all` when `enable.idempotence` is true",
        ),
    ],
)
def test_a_missing_or_wrong_setting_is_a_configuration_error_naming_it(monkeypatch, env, named):
    monkeypatch.setenv("SCORER_MONITOR_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("SCORER_MONITOR_KAFKA_TOPIC", "scored")
    monkeypatch.setenv("SCORER_MONITOR_KAFKA_PASSWORD", SECRET)
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        KafkaSink.from_settings(load_settings())
    assert named in str(raised.value)
    assert SECRET not in str(raised.value)


def test_without_confluent_kafka_the_module_imports_and_the_sink_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['confluent_kafka'] = None  # as if not installed: importing it raises\n"
        "from scorer_core.config.settings import Settings\n"
        "from scorer_core.errors import ConfigurationError\n"
        "from scorer_core.monitor.kafka import KafkaSink\n"
        "try:\n"
        "    KafkaSink.from_settings(Settings(monitor_kafka_bootstrap='h:9092', monitor_kafka_topic='t'))\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert (
        result.stdout.strip()
        == "SCORER_MONITOR=kafka needs confluent-kafka: pip install 'scorer-core[kafka]'"
    )


def test_a_sink_made_while_the_broker_is_down_waits_for_nothing_and_fails_the_send_within_its_timeout():
    started = time.monotonic()
    sink = sink_for(f"127.0.0.1:{free_port()}", "scored")  # nothing listens there
    assert time.monotonic() - started < 1  # librdkafka connects in its own threads
    events = batch(3)
    started = time.monotonic()
    with pytest.raises(
        SinkError, match="Kafka did not acknowledge 3 of 3 events on topic 'scored'"
    ) as raised:
        sink.send(events, timeout=1)
    # Within its 1 s, not the 10 s librdkafka would keep the records: never sent, they were purged.
    assert time.monotonic() - started < 4
    assert raised.value.undelivered is not None
    assert [id(e) for e in raised.value.undelivered] == [id(e) for e in events]
    assert "Connection refused" in str(raised.value)  # the client's own error, for the outbox's log
    started = time.monotonic()
    sink.close(1)
    assert time.monotonic() - started < 3
    with pytest.raises(SinkError, match="closed") as raised:
        sink.send(events, timeout=1)
    assert raised.value.undelivered == events


def test_a_broker_that_takes_connections_and_never_answers_delays_neither_the_sink_nor_its_send():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts, nobody answers
        started = time.monotonic()
        sink = sink_for(f"127.0.0.1:{silent.getsockname()[1]}", "scored")
        assert time.monotonic() - started < 2  # a constructor waiting on the broker would hang here
        events = batch(2)
        started = time.monotonic()
        with pytest.raises(SinkError, match="2 of 2") as raised:
            sink.send(events, timeout=1)
        assert time.monotonic() - started < 4  # never sent (no metadata yet): purged at 1 s
        assert raised.value.undelivered == events
        started = time.monotonic()
        sink.close(1)
        assert time.monotonic() - started < 3


@pytest.mark.slow
def test_a_broker_started_after_the_sink_gets_the_events():
    later = KafkaBroker()  # its port, not listening yet
    try:
        sink = sink_for(later, "scored")
        with pytest.raises(SinkError):
            sink.send(batch(3, "early"), timeout=1)
        later.create_topic("scored")
        later.start()
        events = batch(3, "late")
        deliver(sink, events)
        sink.close(5)
        assert sorted(r.key for r in later.records("scored", at_least=3)) == [b"late-0", b"late-1", b"late-2"]
    finally:
        later.close()


@pytest.mark.slow
@pytest.mark.parametrize("send_while_down", [False, True], ids=["restarted-between-sends", "send-while-down"])
def test_a_restarted_broker_gets_the_events_sent_after_it_is_back(send_while_down):
    """Tansu comes back empty (memory storage), its producer ids forgotten: librdkafka's
    idempotent producer then retries its old id forever, or turns fatal when a send failed while
    the broker was down. The sink builds a new producer after a failed send."""
    with KafkaBroker() as restarted:
        restarted.create_topic("scored")
        # The first send after the restart waits for its records in flight: librdkafka's 3 s.
        sink = sink_for(restarted, "scored", delivery_seconds="3")
        deliver(sink, batch(3, "before"))
        restarted.stop()
        if send_while_down:
            with pytest.raises(SinkError, match="3 of 3"):
                sink.send(batch(3, "down"), timeout=1)
        restarted.start()  # the same port
        events = batch(5, "after")
        attempts = deliver(sink, events)
        sink.close(5)
        records = restarted.records("scored", at_least=5)
    assert {r.key for r in records} >= {e["id"].encode() for e in events}
    assert attempts <= 3


@pytest.mark.slow
def test_a_broker_that_stops_answering_fails_the_send_and_gets_the_events_once_it_answers():
    with KafkaBroker() as stalled:
        stalled.create_topic("scored")
        sink = sink_for(stalled, "scored", delivery_seconds="3")
        deliver(sink, batch(2, "before"))  # connected, the producer id given
        events = batch(4, "stalled")
        stalled.pause()
        started = time.monotonic()
        try:
            with pytest.raises(SinkError, match="4 of 4") as raised:
                sink.send(events, timeout=1)
        finally:
            stalled.resume()
        # In flight: reported when librdkafka gave them up, its 3 s, not left unreported.
        assert time.monotonic() - started < 3 + 4
        assert raised.value.undelivered is not None
        assert [id(e) for e in raised.value.undelivered] == [id(e) for e in events]
        deliver(sink, raised.value.undelivered)
        sink.close(5)
        records = stalled.records("scored", at_least=6)
    # At least once: a record in flight when the broker stopped may be written twice.
    assert {r.key for r in records} == {e["id"].encode() for e in [*batch(2, "before"), *events]}


@pytest.mark.slow
def test_credentials_the_broker_refuses_are_a_sink_error_naming_the_failure_never_the_password(monkeypatch):
    with KafkaBroker(authentication=True) as guarded:
        monkeypatch.setenv("SCORER_MONITOR_KAFKA_BOOTSTRAP", guarded.bootstrap)
        monkeypatch.setenv("SCORER_MONITOR_KAFKA_TOPIC", "scored")
        monkeypatch.setenv(
            "SCORER_MONITOR_KAFKA_CONFIG",
            "security.protocol=SASL_PLAINTEXT,sasl.mechanism=SCRAM-SHA-512,sasl.username=scorer",
        )
        monkeypatch.setenv("SCORER_MONITOR_KAFKA_PASSWORD", SECRET)
        sink = KafkaSink.from_settings(load_settings())
        try:
            with pytest.raises(SinkError, match="SASL authentication error") as raised:
                sink.send(batch(2), timeout=2)
        finally:
            sink.close(1)
    assert SECRET not in str(raised.value)


# End to end: a real `scorer serve` exporting its requests to the broker.


@pytest.fixture
def served(probe_server):
    """``served(broker, topic, **env)``: a server of the probe model (y = 2x) exporting to Kafka."""

    def run(broker: KafkaBroker, topic: str, **env: str):
        settings = {
            "SCORER_MONITOR": "kafka",
            "SCORER_MONITOR_KAFKA_BOOTSTRAP": broker.bootstrap,
            "SCORER_MONITOR_KAFKA_TOPIC": topic,
            "MODEL_NAME": "probe",
            "BATCH_WORKERS": "0",
            **env,
        }
        return probe_server(env=settings, record_headers=False, **SPEC)

    return run


def inferred(target, i: int, **headers: str) -> tuple[str, dict[str, Any]]:
    """Row ``i`` scored with the Open Inference Protocol: the id answered, and the answer."""
    x, name, n, ok = typed(i)
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [1], "data": [x]},
            {"name": "name", "datatype": "BYTES", "shape": [1], "data": [name]},
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [n]},
            {"name": "ok", "datatype": "BOOL", "shape": [1], "data": [ok]},
        ]
    }
    reply = target.post("/v2/models/probe/infer", body, headers=headers)
    assert reply.status == 200, reply
    return reply.headers["x-request-id"], reply.json()


def exported(broker: KafkaBroker, topic: str, count: int) -> dict[str, dict[str, Any]]:
    """The topic's events by request id, each validated against the event schema; exactly
    ``count`` records, one per request (none written twice here: the broker stayed up)."""
    records = broker.records(topic, at_least=count, timeout=60)
    events = {}
    for record in records:
        event = record.event
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        assert record.key == event["id"].encode() and record.headers == {"content-type": b"application/json"}
        events[event["id"]] = event
    assert len(records) == len(events) == count
    return events


def sent_counted(target, count: int) -> None:
    wait_for(
        lambda: (
            f'scorer_monitor_events_total{{outcome="sent",sink="kafka"}} {count}.0'
            in target.get("/metrics").text
        ),
        what=f"{count} events counted sent",
    )


@pytest.mark.slow
def test_each_scored_request_is_one_record_keyed_by_the_answered_request_id(broker, served):
    topic = new_topic(broker, partitions=3)
    auth = {"Authorization": f"Bearer {PASSPHRASE}"}
    with served(broker, topic, SCORER_PASSPHRASE=PASSPHRASE) as target:
        with ThreadPoolExecutor(8) as pool:  # half with the client's id, half with the server's
            answers = dict(
                pool.map(
                    lambda i: scored(target, i, request_id=f"c-{i}" if i % 2 else None, **auth), range(20)
                )
            )
            oip = dict(pool.map(lambda i: inferred(target, i, **auth), range(20, 30)))
        bad = target.post(
            "/model/score", {"fields": FIELDS, "rows": [["1", "a", "ten", "true"]]}, headers=auth
        )
        assert bad.status == 400
        sent_counted(target, 31)
    events = exported(broker, topic, 31)
    bad_id = bad.headers["x-request-id"]
    assert set(events) == set(answers) | set(oip) | {bad_id}
    assert {f"c-{i}" for i in range(1, 20, 2)} <= set(answers)
    for request_id, answer in answers.items():
        event = events[request_id]
        i = int(event["request"]["rows"][0][1].split("-")[1])
        assert event["endpoint"] == "score" and event["status"] == 200 and event["error"] is None
        assert event["model"]["name"] == "probe" and event["model"]["id"] == answer["id"]
        assert event["request"] == {"fields": FIELDS, "rows": [typed(i)]}
        assert event["response"] == {
            "fields": ["y", "label"],
            "rows": [[float(y), lab] for y, lab in answer["score"]],
        }
    for request_id, answer in oip.items():
        event = events[request_id]
        i = int(event["request"]["rows"][0][1].split("-")[1])
        outputs = {output["name"]: output["data"] for output in answer["outputs"]}
        assert event["endpoint"] == "oip_infer" and event["request"]["rows"] == [typed(i)]
        assert event["response"]["rows"] == [[outputs["y"][0], outputs["label"][0]]]
    refused = events[bad_id]
    assert refused["status"] == 400 and "ten" in refused["error"] and refused["response"] is None
    written = b"".join(record.value for record in broker.records(topic, at_least=31))
    assert PASSPHRASE.encode() not in written


@pytest.mark.slow
def test_a_broker_down_at_start_gets_the_events_once_up_and_no_request_fails(served):
    later = KafkaBroker()  # its port, not listening yet
    try:
        later.create_topic("scored")
        with served(later, "scored", SCORER_MONITOR_RETRY_SECONDS="120") as target:  # started without it
            first = [scored(target, i)[0] for i in range(10)]
            wait_for(
                lambda: "Monitoring sink kafka cannot deliver (retrying)" in target.server_log(),
                what="the sink failing",
            )
            later.start()
            second = [scored(target, i)[0] for i in range(10, 20)]
            sent_counted(target, 20)
            metrics = target.get("/metrics").text
            log = target.server_log()
        # librdkafka's reconnection attempts went to logging at DEBUG, not a line each to stderr.
        assert "rdkafka#producer" not in log and "Connection refused" in log
        assert 'scorer_monitor_events_total{outcome="failed",sink="kafka"} 0.0' in metrics
        assert 'scorer_monitor_events_total{outcome="dropped",sink="kafka"} 0.0' in metrics
        # At least once: a record in flight when a send gave up may be there twice.
        records = later.records("scored", at_least=20, timeout=60)
        assert {r.key for r in records} == {request_id.encode() for request_id in first + second}
    finally:
        later.close()


@pytest.mark.slow
def test_worker_processes_export_from_the_server_process(broker, served):
    topic = new_topic(broker)
    with served(broker, topic, BATCH_WORKERS="2") as target:
        with ThreadPoolExecutor(8) as pool:
            answers = dict(pool.map(lambda i: scored(target, i), range(40)))
        sent_counted(target, 40)
    events = exported(broker, topic, 40)
    assert set(events) == set(answers)
    for request_id, answer in answers.items():
        assert [row[0] for row in events[request_id]["response"]["rows"]] == [
            float(y) for y, _ in answer["score"]
        ]


@pytest.mark.slow
def test_a_record_too_large_for_the_producer_is_rejected_and_the_rest_delivered(broker):
    topic = new_topic(broker)
    sink = sink_for(broker, topic, **{"message.max.bytes": "2000", "batch.size": "2000"})
    events = [event("small-1"), event("huge", rows=200), event("small-2")]
    try:
        with pytest.raises(SinkError) as raised:
            sink.send(events, timeout=10)
        assert raised.value.rejected == [events[1]] and raised.value.undelivered == []
        sink.send([event("after")], timeout=10)  # the producer was kept: it is not to blame
    finally:
        sink.close(5)
    assert sorted(r.key for r in broker.records(topic, at_least=3)) == [b"after", b"small-1", b"small-2"]
