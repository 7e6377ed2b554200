"""Monitoring export end to end, through the ``file`` sink: a real server, real requests over
HTTP (H2O's protocol and the Open Inference Protocol), the events read back from disk once the
server has stopped (SIGTERM flushes and publishes the last part), every one validated against
docs/monitoring-event.schema.json. The Kafka and CloudEvents sinks have their own modules."""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.slow

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "monitoring-event.schema.json").read_text())
SPEC = {
    "inputs": [["x", "Float64"], ["name", "Str"], ["n", "Int64"], ["ok", "Bool"]],
    "outputs": [["y", "Float64"], ["label", "Str"]],
}
FIELDS = ["x", "name", "n", "ok"]
HASH_KEY = "a-monitoring-key-of-32-characters"
PASSPHRASE = "the-deployment-passphrase-7f3a"


def events_in(directory: Path) -> list[dict[str, Any]]:
    """Every event in the final parts; none may be left under a hidden (unfinished) name."""
    assert not list(directory.glob(".*")), "a part was left unpublished"
    events = []
    for part in sorted(directory.glob("events-*.jsonl")):
        for line in part.read_bytes().splitlines():
            event = json.loads(line)
            jsonschema.validate(event, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            events.append(event)
    return events


def stopped(target) -> None:
    """SIGTERM, as an orchestrator stops it: the monitor flushes, the last part is published."""
    target.process.terminate()
    target.process.wait(timeout=60)


def row(i: int) -> list[str]:
    """Row ``i``: x is never 13, on which the probe model raises."""
    return [str(i + 0.5), f"name-{i}", str(i * 10), "true" if i % 2 else "false"]


def typed(i: int) -> list[Any]:
    """Row ``i`` as its event holds it, typed as the model's schema types it."""
    return [i + 0.5, f"name-{i}", i * 10, bool(i % 2)]


EXPLODES = {"fields": FIELDS, "rows": [["13", "boom", "130", "true"]]}


def score(target, i: int, path: str = "/model/score", **headers: str) -> dict[str, Any]:
    reply = target.post(
        path, {"fields": FIELDS, "rows": [row(i)]}, headers={"X-Request-Id": f"req-{i}", **headers}
    )
    assert reply.status == 200, reply
    assert reply.headers["x-request-id"] == f"req-{i}"
    return reply.json()


def scored(target, i: int, *, request_id: str | None = None, **headers: str) -> tuple[str, dict[str, Any]]:
    """Row ``i`` scored with H2O's protocol, with the client's ``request_id`` or none: the id
    the server answered with, and the answer."""
    sent = {"X-Request-Id": request_id} if request_id else {}
    reply = target.post("/model/score", {"fields": FIELDS, "rows": [row(i)]}, headers={**sent, **headers})
    assert reply.status == 200, reply
    return reply.headers["x-request-id"], reply.json()


@pytest.fixture
def monitored(probe_server, tmp_path) -> Iterator[tuple[Any, Path]]:
    def run(**env: str):
        directory = tmp_path / "events"
        return probe_server(
            env={
                "SCORER_MONITOR": "file",
                "SCORER_MONITOR_DIR": str(directory),
                "MODEL_NAME": "probe",
                **env,
            },
            record_headers=False,
            **SPEC,
        ), directory

    yield run


def test_every_request_is_exported_with_its_typed_rows_and_its_answer(monitored):
    server, directory = monitored(BATCH_WORKERS="0")
    with server as target:
        with ThreadPoolExecutor(8) as pool:  # single rows, merged into batches as they come
            answers = dict(zip(range(24), pool.map(lambda i: score(target, i), range(24)), strict=True))
        big = {"fields": FIELDS, "rows": [row(i) for i in range(2500)]}
        large = target.post("/dep-7/model/score", big, headers={"X-Request-Id": "req-large"})
        assert large.status == 200
        infer = target.post(
            "/v2/models/probe/infer",
            {
                "id": "oip-1",
                "inputs": [
                    {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.5]},
                    {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["oip"]},
                    {"name": "n", "datatype": "INT64", "shape": [1], "data": [7]},
                    {"name": "ok", "datatype": "BOOL", "shape": [1], "data": [True]},
                ],
            },
            headers={"X-Request-Id": "req-oip"},
        )
        assert infer.status == 200, infer
        bad = target.post(
            "/model/score",
            {"fields": FIELDS, "rows": [["1", "a", "ten", "true"]]},
            headers={"X-Request-Id": "bad"},
        )
        assert bad.status == 400
        failed = target.post("/model/score", EXPLODES, headers={"X-Request-Id": "boom"})
        assert failed.status == 500
        stopped(target)
    events = events_in(directory)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_id.setdefault(event["id"], []).append(event)
    assert set(by_id) == {f"req-{i}" for i in range(24)} | {"req-large", "req-oip", "bad", "boom"}

    for i, answer in answers.items():
        (event,) = by_id[f"req-{i}"]
        assert event["status"] == 200 and event["error"] is None
        assert event["endpoint"] == "score" and event["deployment"] is None
        assert event["model"]["name"] == "probe" and event["model"]["id"] == answer["id"]
        # Typed as the schema types them: a float, a string, an integer, a boolean.
        assert event["request"] == {"fields": FIELDS, "rows": [typed(i)]}
        assert event["response"]["fields"] == ["y", "label"]
        assert event["response"]["rows"] == [[float(y), label] for y, label in answer["score"]]

    parts = sorted(by_id["req-large"], key=lambda e: e["part"])
    assert [(e["part"], e["parts"], len(e["request"]["rows"])) for e in parts] == [
        (1, 3, 1000),
        (2, 3, 1000),
        (3, 3, 500),
    ]
    assert all(e["deployment"] == "/dep-7" for e in parts)
    exported = [r for e in parts for r in e["request"]["rows"]]
    assert exported == [typed(i) for i in range(2500)]
    assert [r[0] for e in parts for r in e["response"]["rows"]] == [2 * (i + 0.5) for i in range(2500)]

    (oip,) = by_id["req-oip"]
    assert oip["endpoint"] == "oip_infer"
    assert oip["request"]["rows"] == [[1.5, "oip", 7, True]] and oip["response"]["rows"][0][0] == 3.0

    (refused,) = by_id["bad"]
    assert refused["status"] == 400 and "ten" in refused["error"] and refused["response"] is None
    assert refused["request"] == {"fields": FIELDS, "rows": [["1", "a", "ten", "true"]]}  # as sent
    (exploded,) = by_id["boom"]
    assert exploded["status"] == 500 and "exploded" in exploded["error"]
    assert exploded["request"]["rows"] == [[13.0, "boom", 130, True]] and exploded["response"] is None


def test_sampling_masking_and_the_credential_never_exported(monitored):
    server, directory = monitored(
        BATCH_WORKERS="0",
        SCORER_PASSPHRASE=PASSPHRASE,
        SCORER_MONITOR_SAMPLE="0.5",
        SCORER_MONITOR_FAILURES="false",
        SCORER_MONITOR_DROP_FIELDS="name",
        SCORER_MONITOR_HASH_FIELDS="n,label",
        SCORER_MONITOR_HASH_KEY=HASH_KEY,
        SCORER_MONITOR_HEADERS="X-Tenant",
    )
    auth = {"Authorization": f"Bearer {PASSPHRASE}", "X-Tenant": "acme", "X-Other": "nope"}
    with server as target:
        for i in range(60):
            score(target, i, **auth)
        failed = target.post("/model/score", EXPLODES, headers={"X-Request-Id": "req-13", **auth})
        assert failed.status == 500
        stopped(target)
    events = events_in(directory)
    kept = {f"req-{i}" for i in range(60) if zlib.crc32(f"req-{i}".encode()) < 0.5 * 2**32}
    assert 15 < len(kept) < 45  # the sample is a hash's, not all or nothing
    assert {e["id"] for e in events} == kept  # the failed request too is left out, sampled or not
    for event in events:
        i = int(event["id"].split("-")[1])
        assert event["headers"] == {"x-tenant": "acme"}
        assert event["request"]["fields"] == ["x", "n", "ok"]  # name dropped
        digest = hmac.new(HASH_KEY.encode(), str(i * 10).encode(), hashlib.sha256).hexdigest()
        assert event["request"]["rows"] == [[i + 0.5, digest, bool(i % 2)]]
        label = "big" if i + 0.5 > 1 else "small"
        assert (
            event["response"]["rows"][0][1]
            == hmac.new(HASH_KEY.encode(), label.encode(), hashlib.sha256).hexdigest()
        )
    written = b"".join(path.read_bytes() for path in directory.iterdir())
    assert PASSPHRASE.encode() not in written and b"name-" not in written and b"acme" in written


def test_worker_processes_export_from_the_server_process(monitored):
    server, directory = monitored(BATCH_WORKERS="2")
    with server as target:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: score(target, i), range(40)))
        wait_for(
            lambda: (
                'scorer_monitor_events_total{outcome="sent",sink="file"} 40.0' in target.get("/metrics").text
            ),
            what="40 events sent",
        )
        stopped(target)
    events = events_in(directory)
    assert sorted(e["id"] for e in events) == sorted(f"req-{i}" for i in range(40))
    assert all(e["response"]["rows"][0][0] == 2 * e["request"]["rows"][0][0] for e in events)


def test_grpc_calls_are_exported_with_their_metadata_id(monitored):
    import numpy as np
    import tritonclient.grpc as triton

    from conformance.target import free_port

    port = free_port()
    server, directory = monitored(BATCH_WORKERS="0", SCORER_GRPC_PORT=str(port))
    with server as target:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        inputs = []
        for name, datatype, value in (
            ("x", "FP64", np.array([2.5])),
            ("name", "BYTES", np.array(["grpc"], dtype=object)),
            ("n", "INT64", np.array([4])),
            ("ok", "BOOL", np.array([False])),
        ):
            tensor = triton.InferInput(name, [1], datatype)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        answer = client.infer("probe", inputs, headers={"x-request-id": "grpc-1"})
        assert answer.as_numpy("y").tolist() == [5.0]
        client.close()
        stopped(target)
    (event,) = events_in(directory)
    assert event["id"] == "grpc-1" and event["endpoint"] == "grpc_infer" and event["status"] == 200
    assert event["request"]["rows"] == [[2.5, "grpc", 4, False]]
    assert event["response"]["rows"][0][0] == 5.0
