"""The ``cloudevents`` monitoring sink, read back by the CloudEvents SDK over real sockets: each
event a request and a response CloudEvent with one ``ce-id`` and KServe's logger's extensions;
a receiver that is down, refusing, stalled or restarted named in a SinkError with exactly the
events it did not get, and reached again once it is back."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.cloudevents import REQUEST_TYPE, RESPONSE_TYPE, CloudEventsSink
from scorer_core.monitor.sinks import SinkError
from tests.cloudevents_receiver import Receiver
from tests.conftest import wait_for
from tests.test_monitor_http import FIELDS, PASSPHRASE, SPEC, scored, stopped, typed


def event(request_id: str = "r1", rows: int = 1, **changes: Any) -> dict[str, Any]:
    """An event as ``events.EventShaper`` makes it: a request of ``rows`` rows, answered."""
    return {
        "id": request_id,
        "part": 1,
        "parts": 1,
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
        **changes,
    }


def pairs(events: list[Any]) -> dict[str, dict[str, Any]]:
    """The received events by ``ce-id``, then by ``request``/``response``."""
    found: dict[str, dict[str, Any]] = {}
    for received in events:
        half = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}[received.get_type()]
        assert half not in found.setdefault(received.get_id(), {}), received
        found[received.get_id()][half] = received
    return found


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def sink(receiver):
    made = CloudEventsSink(receiver.url, namespace="scoring", host_name="pod-7")
    yield made
    made.close(1)


def test_each_event_is_a_request_and_a_response_cloudevent_sharing_its_id(receiver, sink):
    failed = event(
        "r2",
        status=400,
        error="Row 1: 'x' is not a number",
        response=None,
        endpoint="oip_infer",
        deployment="/dep-1",
    )
    tenant = event("r3", headers={"x-tenant-id": "acme"})
    sink.send([event("r1", rows=2), failed, tenant], timeout=10)
    received = pairs(receiver.wait_for(6))
    assert sorted(received) == ["r1", "r2", "r3"] and all(len(p) == 2 for p in received.values()), received
    assert receiver.errors == []

    request, response = received["r1"]["request"], received["r1"]["response"]
    for half in (request, response):
        assert half.get_specversion() == "1.0"
        assert half.get_source() == "http://pod-7/iris"
        assert half.get_datacontenttype() == "application/json"
        assert half.get_extension("inferenceservicename") == "iris"
        assert half.get_extension("namespace") == "scoring"
        assert half.get_extension("component") == "predictor"
        assert half.get_extension("endpoint") == "score"
        assert half.get_extension("status") == "200"
        assert json.loads(half.get_extension("metadata")) == {}
    # The request when it arrived, the response when it was answered (1.5 ms later).
    assert request.get_time().isoformat() == "2026-12-06T15:00:00.250000+00:00"
    assert response.get_time().isoformat() == "2026-12-06T15:00:00.251500+00:00"
    assert request.get_data() == {
        "id": "r1",
        "part": 1,
        "parts": 1,
        "received": "2026-12-06T15:00:00.250000+00:00",
        "model": {"id": "m-uuid", "name": "iris", "version": "m-uuid", "runtime": "mlflow"},
        "deployment": None,
        "endpoint": "score",
        "fields": ["x", "kind"],
        "rows": [[0.0, "a"], [1.0, "a"]],
    }
    assert response.get_data() == {
        "id": "r1",
        "part": 1,
        "parts": 1,
        "status": 200,
        "error": None,
        "duration_ms": 1.5,
        "fields": ["y"],
        "rows": [[0.0], [2.0]],
    }

    # A refused request: its rows as far as they were read, the status and the error's text.
    assert received["r2"]["request"].get_extension("endpoint") == "oip_infer"
    assert received["r2"]["request"].get_data()["deployment"] == "/dep-1"
    assert received["r2"]["response"].get_extension("status") == "400"
    assert received["r2"]["response"].get_data() == {
        "id": "r2",
        "part": 1,
        "parts": 1,
        "status": 400,
        "error": "Row 1: 'x' is not a number",
        "duration_ms": 1.5,
        "fields": None,
        "rows": None,
    }
    # Allow-listed headers as KServe's metadata: Go's canonical names, a list of values each.
    for half in received["r3"].values():
        assert json.loads(half.get_extension("metadata")) == {"X-Tenant-Id": ["acme"]}
    # Binary mode: the attributes are headers (the JSON kept readable, as KServe's Go SDK sends
    # it), the body is the data alone; the posts came in order, on one kept connection.
    headers = [sent for sent, _ in receiver.requests]
    assert [h["ce-id"] for h in headers] == ["r1", "r1", "r2", "r2", "r3", "r3"]
    assert [h["ce-type"] for h in headers] == [REQUEST_TYPE, RESPONSE_TYPE] * 3
    assert headers[4]["ce-metadata"] == '{"X-Tenant-Id":["acme"]}'
    assert all(h["content-type"] == "application/json" for h in headers)
    assert len(set(receiver.peers)) == 1, receiver.peers


def test_a_request_of_several_parts_has_one_pairable_id_per_part(receiver, sink):
    parts = [event("big", part=part, parts=3) for part in (1, 2, 3)]
    sink.send(parts, timeout=10)
    received = pairs(receiver.wait_for(6))
    assert sorted(received) == ["big#1", "big#2", "big#3"]
    for number in (1, 2, 3):
        for half in received[f"big#{number}"].values():
            data = half.get_data()
            assert (data["id"], data["part"], data["parts"]) == ("big", number, 3)


def test_values_the_http_binding_encodes_are_read_back_exactly(receiver):
    sink = CloudEventsSink(receiver.url, namespace="équipe 1", host_name="pod-7")
    try:
        name = "crédit 100% sûr"
        sink.send(
            [
                event(
                    model={"id": "m", "name": name, "version": "m", "runtime": "r"},
                    headers={"x-note": " 50%41 é "},
                )
            ],
            timeout=10,
        )
    finally:
        sink.close(1)
    for half in receiver.wait_for(2):
        assert half.get_extension("inferenceservicename") == name
        assert half.get_extension("namespace") == "équipe 1"
        assert json.loads(half.get_extension("metadata")) == {"X-Note": [" 50%41 é "]}
        assert half.get_source() == "http://pod-7/cr%C3%A9dit%20100%25%20s%C3%BBr"
    assert receiver.errors == []


def test_without_a_namespace_none_is_sent(receiver):
    sink = CloudEventsSink(receiver.url, host_name="pod-7")
    try:
        sink.send([event()], timeout=10)
    finally:
        sink.close(1)
    assert all(half.get_extension("namespace") is None for half in receiver.wait_for(2))


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (None, "needs SCORER_MONITOR_URL"),
        ("", "needs SCORER_MONITOR_URL"),
        ("ftp://receiver/events", "must be an http:// or https:// URL"),
        ("receiver:8080/events", "must be an http:// or https:// URL"),
        ("http:///events", "must be an http:// or https:// URL"),
        ("http://receiver:99999/events", "SCORER_MONITOR_URL is not a URL"),
        ("https://user:s3cret@receiver/events", "must not hold credentials"),
        ("http://receiver/my events", "must be printable ASCII"),
        ("http://réception/events", "must be printable ASCII"),
    ],
)
def test_a_missing_or_wrong_url_is_a_configuration_error_naming_the_setting(monkeypatch, url, named):
    if url is None:
        monkeypatch.delenv("SCORER_MONITOR_URL", raising=False)
    else:
        monkeypatch.setenv("SCORER_MONITOR_URL", url)
    with pytest.raises(ConfigurationError, match="SCORER_MONITOR_URL") as raised:
        CloudEventsSink.from_settings(load_settings())
    assert named in str(raised.value) and "s3cret" not in str(raised.value)


def test_the_settings_give_the_url_and_pod_namespace_the_namespace(monkeypatch, receiver):
    monkeypatch.setenv("SCORER_MONITOR_URL", receiver.url)
    monkeypatch.setenv("POD_NAMESPACE", "models")
    sink = CloudEventsSink.from_settings(load_settings())
    try:
        sink.send([event()], timeout=10)
    finally:
        sink.close(1)
    assert [half.get_extension("namespace") for half in receiver.wait_for(2)] == ["models", "models"]


def test_making_the_sink_connects_to_nothing():
    with socket.create_server(("127.0.0.1", 0)) as listening:
        listening.setblocking(False)
        sink = CloudEventsSink(f"http://127.0.0.1:{listening.getsockname()[1]}/", host_name="pod-7")
        with pytest.raises(BlockingIOError):
            listening.accept()  # no connection waiting: the sink did not connect
        sink.close(1)


def test_a_receiver_that_is_down_is_a_sink_error_at_once_with_every_event_undelivered():
    with Receiver() as gone:
        url = gone.url
    sink = CloudEventsSink(url, host_name="pod-7")
    batch = [event(f"r{i}") for i in range(3)]
    started = time.monotonic()
    with pytest.raises(SinkError, match=r"CloudEvents receiver http://127\.0\.0\.1:") as raised:
        sink.send(batch, timeout=30)
    assert time.monotonic() - started < 10  # refused at once, not after the 30 s allowed
    assert raised.value.undelivered == batch
    sink.close(1)


def test_a_refusing_receiver_is_a_sink_error_and_only_events_not_fully_posted_are_undelivered(receiver, sink):
    batch = [event(f"r{i}") for i in range(3)]
    receiver.answer = 503
    with pytest.raises(SinkError, match="answered 503") as raised:
        sink.send(batch, timeout=10)
    assert raised.value.undelivered == batch and receiver.events == []
    # The first pair and the second's request half are taken, the second's response refused.
    receiver.answer, receiver.refuse_after = 200, 3
    with pytest.raises(SinkError, match=r"answered 503 .*: refused by the test receiver") as raised:
        sink.send(batch, timeout=10)
    assert raised.value.undelivered == batch[1:]
    assert [(e.get_id(), e.get_type()) for e in receiver.events] == [
        ("r0", REQUEST_TYPE),
        ("r0", RESPONSE_TYPE),
        ("r1", REQUEST_TYPE),
    ]
    receiver.refuse_after = None
    sink.send(raised.value.undelivered, timeout=10)  # the outbox's retry: r1's request again
    assert [(e.get_id(), e.get_type()) for e in receiver.wait_for(7)[3:]] == [
        ("r1", REQUEST_TYPE),
        ("r1", RESPONSE_TYPE),
        ("r2", REQUEST_TYPE),
        ("r2", RESPONSE_TYPE),
    ]


def test_an_event_the_receiver_refuses_for_good_is_rejected_and_the_rest_delivered(receiver, sink):
    batch = [event(f"r{i}") for i in range(3)]
    receiver.too_large = {"r1"}  # 413: no retry will change it
    with pytest.raises(SinkError, match="answered 413") as raised:
        sink.send(batch, timeout=10)
    assert raised.value.rejected == [batch[1]] and raised.value.undelivered == []
    assert sorted(pairs(receiver.wait_for(4))) == ["r0", "r2"]
    receiver.too_large, receiver.answer = set(), 429  # 429 says "later": retried, not rejected
    with pytest.raises(SinkError, match="answered 429") as raised:
        sink.send(batch, timeout=10)
    assert raised.value.rejected == [] and raised.value.undelivered == batch


def test_a_stalled_receiver_is_a_sink_error_within_the_timeout(receiver, sink):
    receiver.stall()
    started = time.monotonic()
    try:
        with pytest.raises(SinkError, match="timed out") as raised:
            sink.send([event("r1"), event("r2")], timeout=1)
    finally:
        receiver.release()
    assert time.monotonic() - started < 10
    assert [e["id"] for e in raised.value.undelivered] == ["r1", "r2"]
    sink.send([event("r3")], timeout=10)  # a new connection: the stalled one was dropped
    assert "r3" in pairs(receiver.wait_for(2))


def test_a_restarted_receiver_gets_the_later_events(receiver, sink):
    sink.send([event("r1")], timeout=10)
    receiver.wait_for(2)
    receiver.stop()
    with pytest.raises(SinkError) as raised:
        sink.send([event("r2")], timeout=10)
    assert [e["id"] for e in raised.value.undelivered] == ["r2"]
    receiver.start()  # the same port
    sink.send(raised.value.undelivered, timeout=10)
    # Restarted between two sends: the kept connection is dead, and one new one carries the post.
    receiver.stop()
    receiver.start()
    sink.send([event("r3")], timeout=10)
    assert sorted(pairs(receiver.wait_for(6))) == ["r1", "r2", "r3"]


def test_a_closed_sink_sends_nothing(receiver, sink):
    sink.close(1)
    with pytest.raises(SinkError, match="closed"):
        sink.send([event()], timeout=10)
    assert receiver.requests == []


def test_https_with_the_system_store_or_ssl_cert_file(tmp_path, monkeypatch):
    from tests.test_tls_http import make_certificate

    cert, key = make_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with Receiver(tls=tls) as receiver:
        assert receiver.url.startswith("https://")
        untrusting = CloudEventsSink(receiver.url, host_name="pod-7")
        with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.send([event("r1")], timeout=10)
        untrusting.close(1)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = CloudEventsSink(receiver.url, host_name="pod-7")
        trusting.send([event("r2"), event("r3")], timeout=10)
        trusting.close(1)
        assert sorted(pairs(receiver.wait_for(4))) == ["r2", "r3"]
        assert len(set(receiver.peers)) == 1  # one handshake for all four posts


class Scripted:
    """A raw HTTP/1.1 server answering each post with the next of ``replies`` (bytes as sent,
    then the connection closed when the reply is followed by ``CLOSE``): answers the SDK-based
    receiver never gives (chunked, interim, close-delimited, malformed)."""

    CLOSE = b"<close>"

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.posts: list[tuple[int, bytes]] = []  # (connection number, head)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/in"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        number = 0
        while self.replies:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            number += 1
            with connection, contextlib.suppress(OSError):  # OSError: the client went
                self._answer(connection, number)

    def _answer(self, connection: socket.socket, number: int) -> None:
        buffer = b""
        while self.replies:
            while b"\r\n\r\n" not in buffer:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head).group(1))
            while len(buffer) < length:
                buffer += connection.recv(65536)
            buffer = buffer[length:]
            self.posts.append((number, head))
            reply = self.replies.pop(0)
            connection.sendall(reply.removesuffix(self.CLOSE))
            if reply.endswith(self.CLOSE):
                return

    def close(self) -> None:
        self._listener.close()
        self._thread.join(10)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("replies", "connections"),
    [
        (
            [
                b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nT: 1\r\n\r\n",
                OK,
                OK,
                OK,
            ],
            1,
        ),
        ([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", OK, OK, OK], 1),
        (
            [
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok" + Scripted.CLOSE,
                OK,
                OK,
                OK,
            ],
            2,
        ),
        ([b"HTTP/1.0 200 OK\r\n\r\nno length, ends at the close" + Scripted.CLOSE, OK, OK, OK], 2),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000, OK, OK, OK], 2),
    ],
    ids=["chunked", "interim-then-204", "connection-close", "http-1.0-to-close", "long-answer-unread"],
)
def test_answers_of_every_framing_are_read_and_the_connection_kept_when_it_can_be(replies, connections):
    server = Scripted(replies)
    sink = CloudEventsSink(server.url, host_name="pod-7")
    try:
        sink.send([event("r1"), event("r2")], timeout=10)
    finally:
        sink.close(1)
        server.close()
    assert [number for number, _ in server.posts] == [1] + [connections] * 3
    assert all(head.startswith(b"POST /in HTTP/1.1\r\nhost: 127.0.0.1:") for _, head in server.posts)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboom\r\n0\r\n\r\n",
            "answered 500 Internal Server Error: boom",
        ),
        (b"hello\r\n\r\n", "not an HTTP/1.x answer: 'hello'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "ValueError"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort" + Scripted.CLOSE,
            "closed the connection mid-answer",
        ),
    ],
    ids=["error-answer", "not-http", "bad-length", "cut-short"],
)
def test_an_error_or_broken_answer_is_a_sink_error_naming_it(reply, message):
    server = Scripted([reply])
    sink = CloudEventsSink(server.url, host_name="pod-7")
    try:
        with pytest.raises(SinkError, match=re.escape(message)) as raised:
            sink.send([event("r1")], timeout=10)
    finally:
        sink.close(1)
        server.close()
    assert [e["id"] for e in raised.value.undelivered] == ["r1"]


# End to end: a real `scorer serve` exporting its requests to the receiver.


@pytest.fixture
def served(probe_server, receiver):
    """``served(**env)``: a server of the probe model (y = 2x) whose monitoring posts to ``receiver``."""

    def run(**env: str):
        settings = {
            "SCORER_MONITOR": "cloudevents",
            "SCORER_MONITOR_URL": receiver.url,
            "MODEL_NAME": "probe",
            "BATCH_WORKERS": "0",
            **env,
        }
        return probe_server(env=settings, record_headers=False, **SPEC)

    return run


@pytest.mark.slow
def test_each_scored_request_arrives_as_a_pair_with_its_id_and_its_answer(served, receiver):
    with served(POD_NAMESPACE="models") as target:
        with ThreadPoolExecutor(8) as pool:  # half with the client's id, half with the server's
            answers = dict(
                pool.map(lambda i: scored(target, i, request_id=f"c-{i}" if i % 2 else None), range(20))
            )
        bad = target.post("/model/score", {"fields": FIELDS, "rows": [["1", "a", "ten", "true"]]})
        assert bad.status == 400
        received = pairs(receiver.wait_for(42))
    assert receiver.errors == []
    bad_id = bad.headers["x-request-id"]
    assert set(received) == set(answers) | {bad_id} and all(len(p) == 2 for p in received.values())
    assert {f"c-{i}" for i in range(1, 20, 2)} <= set(answers)
    for request_id, answer in answers.items():
        request, response = received[request_id]["request"], received[request_id]["response"]
        i = int(request.get_data()["rows"][0][1].split("-")[1])
        assert request.get_data()["fields"] == FIELDS and request.get_data()["rows"] == [typed(i)]
        assert request.get_data()["model"]["id"] == answer["id"]
        assert response.get_data()["fields"] == ["y", "label"]
        assert response.get_data()["rows"] == [[float(y), label] for y, label in answer["score"]]
        for half in (request, response):
            assert half.get_extension("inferenceservicename") == "probe"
            assert half.get_extension("namespace") == "models"
            assert half.get_extension("endpoint") == "score" and half.get_extension("status") == "200"
            assert half.get_source().endswith("/probe")
    refused = received[bad_id]["response"]
    assert refused.get_extension("status") == "400" and refused.get_data()["status"] == 400
    assert "ten" in refused.get_data()["error"] and refused.get_data()["rows"] is None


@pytest.mark.slow
def test_failures_left_out_on_request_and_the_passphrase_never_sent(served, receiver):
    auth = {"Authorization": f"Bearer {PASSPHRASE}", "X-Tenant": "acme"}
    env = {
        "SCORER_PASSPHRASE": PASSPHRASE,
        "SCORER_MONITOR_FAILURES": "false",
        "SCORER_MONITOR_HEADERS": "X-Tenant",
    }
    with served(**env) as target:
        bad = target.post(
            "/model/score",
            {"fields": FIELDS, "rows": [["1", "a", "ten", "true"]]},
            headers={"X-Request-Id": "bad", **auth},
        )
        assert bad.status == 400
        ids = [scored(target, i, request_id=f"r-{i}", **auth)[0] for i in range(5)]
        stopped(target)  # flushed at SIGTERM; the failed request, first in line, was never queued
    received = pairs(receiver.wait_for(10))
    assert sorted(received) == sorted(ids) and len(receiver.events) == 10
    for half in receiver.events:
        assert json.loads(half.get_extension("metadata")) == {"X-Tenant": ["acme"]}
    posted = b"".join(body + json.dumps(headers).encode() for headers, body in receiver.requests)
    assert PASSPHRASE.encode() not in posted and b"acme" in posted


@pytest.mark.slow
def test_a_receiver_down_at_start_gets_the_events_once_up_and_no_request_fails(served, receiver):
    receiver.stop()  # down; started again below on the same port
    with served(SCORER_MONITOR_RETRY_SECONDS="120") as target:  # started: the receiver was not needed
        first = [scored(target, i)[0] for i in range(10)]
        wait_for(
            lambda: "Monitoring sink cloudevents cannot deliver (retrying)" in target.server_log(),
            what="the sink failing",
        )
        receiver.start()
        second = [scored(target, i)[0] for i in range(10, 20)]
        received = pairs(receiver.wait_for(40, timeout=60))
        assert sorted(received) == sorted(first + second)
        wait_for(
            lambda: (
                'scorer_monitor_events_total{outcome="sent",sink="cloudevents"} 20.0'
                in target.get("/metrics").text
            ),
            what="20 events counted sent",
        )
        metrics = target.get("/metrics").text
    assert 'scorer_monitor_events_total{outcome="failed",sink="cloudevents"} 0.0' in metrics
    assert 'scorer_monitor_events_total{outcome="dropped",sink="cloudevents"} 0.0' in metrics


@pytest.mark.slow
def test_a_receiver_going_down_under_load_loses_only_what_overflows_and_counts_it(served, receiver):
    """Clients keep scoring while the receiver goes away and comes back: no request fails, every
    event is either received or counted dropped (nothing lost silently), and events after the
    receiver came back arrive."""
    with served(SCORER_MONITOR_QUEUE_SIZE="50", SCORER_MONITOR_RETRY_SECONDS="120") as target:

        def counted() -> dict[str, float]:
            text = target.get("/metrics").text
            found = re.findall(
                r'scorer_monitor_events_total\{outcome="(\w+)",sink="cloudevents"\} (\S+)', text
            )
            return {outcome: float(n) for outcome, n in found}

        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(lambda i: scored(target, i)[0], range(40)))
            receiver.wait_for(80)
            receiver.stop()
            during = list(pool.map(lambda i: scored(target, i)[0], range(40, 440)))
            receiver.start()
            # Every event so far sent or dropped: the queue is empty, and the sink delivers again.
            earlier = len(before) + len(during)
            wait_for(lambda: counted()["sent"] + counted()["dropped"] == earlier, 90, "the queue drained")
            after = list(pool.map(lambda i: scored(target, i)[0], range(440, 480)))
        total = len(before) + len(during) + len(after)
        wait_for(lambda: counted()["sent"] + counted()["dropped"] == total, 90, "every event counted")
        final = counted()
    received = pairs(receiver.events)
    assert final["failed"] == 0 and final["dropped"] > 0  # the queue held 50; 400 came meanwhile
    assert set(received) <= set(before + during + after)
    assert len(received) == final["sent"]  # every event counted sent arrived, as a whole pair
    assert set(before) <= set(received) and set(after) <= set(received)
