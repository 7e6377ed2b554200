"""What the H2O path promises holds for the Open Inference Protocol's requests too: forwarded
headers reach model code, body limits, the request deadline, model failures, all with the
protocol's ``{"error": ...}`` bodies. Real server, real sockets, the probe model (y = 2x)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _infer(target, name, xs, **kwargs):
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [len(xs)], "data": xs}]}
    return target.post(f"/v2/models/{name}/infer", body, **kwargs)


def test_forwarded_headers_reach_model_code_for_each_request(probe_server, probe_file):
    with probe_server() as target:
        name = "model-0"  # probe_server's first model file
        for tenant in ("acme", "globex"):
            reply = _infer(target, name, [1.5], headers={"X-Tenant-Id": tenant, "X-Not-Forwarded": "no"})
            assert reply.status == 200, reply
            assert reply.json()["outputs"][0]["data"] == [3.0]
            seen = target.seen_headers()[-1]
            headers = {key.lower(): value for key, value in seen["headers"].items()}
            assert seen["rows"] == 1 and headers.get("x-tenant-id") == tenant, seen
            assert "x-not-forwarded" not in headers


def test_a_body_over_the_limit_is_a_413_with_an_error_body(probe_server):
    with probe_server(env={"SCORER_MAX_REQUEST_BYTES": "2000"}, record_headers=False) as target:
        reply = _infer(target, "model-0", [1.0] * 400)
        assert reply.status == 413, reply
        assert set(reply.json()) == {"error"} and "SCORER_MAX_REQUEST_BYTES" in reply.json()["error"]
        assert _infer(target, "model-0", [1.0]).status == 200


def test_a_call_past_the_deadline_is_a_504_and_a_failing_model_a_500(probe_server):
    env = {"SCORER_REQUEST_TIMEOUT": "1", "SCORER_STUCK_CALL_MARGIN": "600"}
    with probe_server(env=env, record_headers=False, hang_on=99) as target:
        failed = _infer(target, "model-0", [13.0], timeout=30)  # the probe refuses 13
        assert failed.status == 500 and set(failed.json()) == {"error"}, failed
        assert "Failed scoring request" not in failed.json()["error"]  # H2O's prefix stays H2O's
        late = _infer(target, "model-0", [99.0], timeout=30)  # last: the hung call keeps its thread
        assert late.status == 504, late
        assert set(late.json()) == {"error"} and "SCORER_REQUEST_TIMEOUT" in late.json()["error"]


def test_compressed_bodies_empty_ones_and_the_frameworks_refusals(probe_server):
    import gzip
    import json
    import zlib

    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}]}).encode()
    path = "/v2/models/model-0/infer"
    with probe_server(env={"SCORER_MAX_REQUEST_BYTES": "100000"}, record_headers=False) as target:
        for encoding, raw in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            reply = target.post(path, raw=raw, headers={"Content-Encoding": encoding})
            assert reply.status == 200 and reply.json()["outputs"][0]["data"] == [2.0, 4.0], (encoding, reply)
        bomb = gzip.compress(b" " * 5_000_000)  # 5 MB of spaces in a few kilobytes
        assert len(bomb) < 100_000
        too_large = target.post(path, raw=bomb, headers={"Content-Encoding": "gzip"})
        assert too_large.status == 413 and set(too_large.json()) == {"error"}, too_large
        unknown = target.post(path, raw=body, headers={"Content-Encoding": "br"})
        assert unknown.status == 415 and "Content-Encoding 'br'" in unknown.json()["error"], unknown
        broken = target.post(path, raw=b"not gzip", headers={"Content-Encoding": "gzip"})
        assert broken.status == 400 and "not valid gzip data" in broken.json()["error"], broken
        empty = target.post(path, raw=b"")
        assert empty.status == 400 and empty.json() == {"error": "the request body is empty; send a JSON object with 'inputs'"}
        for method, made_up in (("GET", "/v2/nope"), ("GET", path)):
            reply = target.get(made_up) if method == "GET" else target.post(made_up)
            assert reply.status in (404, 405) and set(reply.json()) == {"error"}, (made_up, reply)
        assert target.get("/nope").json() == {"detail": "Not Found"}  # elsewhere, as before
        long_name = "m" * 5000
        reply = target.get(f"/v2/models/{long_name}")
        assert reply.status == 404 and len(reply.json()["error"]) < 400, len(reply.text)


def test_start_server_never_takes_the_port_the_caller_chose_for_grpc(monkeypatch):
    """free_port() may hand out a port twice before anything binds it: CI once saw the server's
    HTTP port equal the SCORER_GRPC_PORT its test had just chosen (the server refused to start)."""
    import conformance.target as target

    ports = iter([5001, 5001, 5002])
    monkeypatch.setattr(target, "free_port", lambda: next(ports))

    class Started(Exception):
        pass

    def launch(command, env, output):
        raise Started(command)

    with (
        target.servers_launched_by(launch),
        pytest.raises(Started) as started,
        target.start_server("m", env={"SCORER_GRPC_PORT": "5001"}),
    ):
        pass
    command = started.value.args[0]
    assert command[command.index("--port") + 1] == "5002"
