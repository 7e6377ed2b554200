"""SCORER_LOG_FORMAT=json and SCORER_ACCESS_LOG over real HTTP: every line an object, access
lines with the request's id, endpoint, status, duration and rows, and the id on the answer; in
text, no client's or model's text can make a line of its own."""

from __future__ import annotations

import json
import re

import pytest

from conformance import start_server
from conformance.target import free_port
from tests.conftest import plugin_env, wait_for
from tests.test_cli import scorer

pytestmark = pytest.mark.slow

SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}
ROWS = {"fields": ["x"], "rows": [["1"], ["2"], ["3"]]}


def model_access_lines(target) -> list[str]:
    """Access lines for /model/ paths (the start-up's /readyz polls have theirs too)."""
    return [ln for ln in target.server_log().splitlines() if "scorer_core.access" in ln and "/model/" in ln]


def logged_after(target, access: int) -> str:
    """The server's log once it holds ``access`` /model/ access lines (each written as its answer completes)."""
    wait_for(lambda: len(model_access_lines(target)) >= access, what=f"{access} access log lines")
    return target.server_log()


def log_of_stopped(target) -> str:
    """Stop the server, then read its log: a line not there now was never going to be written."""
    target.process.terminate()
    target.process.wait(timeout=30)
    return target.server_log()


def lines_of(target, access: int) -> list[dict]:
    return [json.loads(line) for line in logged_after(target, access).splitlines() if line.strip()]


def test_json_logs_are_one_object_per_line_with_the_request_id(probe_server):
    env = {"SCORER_LOG_FORMAT": "json", "SCORER_ACCESS_LOG": "true", "BATCH_WORKERS": "1"}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        given = target.post("/model/score", ROWS, headers={"X-Request-Id": "req-0042"})
        assert given.status == 200 and given.headers["x-request-id"] == "req-0042"
        made_up = target.post("/d-1/model/score", ROWS, headers={"X-Request-Id": "not; a token"})
        assert made_up.status == 200 and re.fullmatch(r"[0-9a-f]{16}", made_up.headers["x-request-id"])
        failed = target.post(
            "/model/score", {"fields": ["x"], "rows": [["13"]]}, headers={"X-Request-Id": "req-13"}
        )
        assert failed.status == 500
        entries = lines_of(target, access=3)  # every line parses, or this fails
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    access = {e["request_id"]: e for e in entries if e["logger"] == "scorer_core.access"}
    assert access["req-0042"] | {"duration_ms": 0, "client": ""} == {
        "time": access["req-0042"]["time"],
        "level": "info",
        "logger": "scorer_core.access",
        "message": access["req-0042"]["message"],
        "request_id": "req-0042",
        "method": "POST",
        "path": "/model/score",
        "endpoint": "score",
        "status": 200,
        "duration_ms": 0,
        "rows": 3,
        "client": "",
    }
    assert access["req-0042"]["duration_ms"] > 0 and access["req-0042"]["client"].startswith("127.0.0.1:")
    assert access[made_up.headers["x-request-id"]]["path"] == "/model/score"  # the prefix stripped
    assert access["req-13"]["status"] == 500
    # The model's failure is logged with the id of the request that caused it.
    failure = [e for e in entries if e["level"] == "error" and "exploded" in e["message"]]
    assert failure and all(e.get("request_id") == "req-13" for e in failure)
    # The worker process logs in JSON too, and so does uvicorn.
    assert any("worker" in e["message"].lower() for e in entries)
    assert any(e["logger"].startswith("uvicorn") for e in entries)


def test_the_access_log_is_off_at_info_and_plain_text_when_asked_for(probe_server):
    with probe_server(record_headers=False, **SPEC) as target:
        assert target.post("/model/score", ROWS).status == 200
        assert "x-request-id" not in target.post("/model/score", ROWS).headers
        assert "/model/score" not in log_of_stopped(target)
    with probe_server(env={"SCORER_ACCESS_LOG": "true"}, record_headers=False, **SPEC) as target:
        assert target.post("/model/score", ROWS, headers={"X-Request-Id": "r-1"}).status == 200
        (line,) = [ln for ln in logged_after(target, 1).splitlines() if "scorer_core.access: POST" in ln]
        assert re.search(r"INFO scorer_core\.access: POST /model/score 200 [\d.]+ ms rows=3$", line), line


def test_a_path_cannot_forge_an_access_log_line(probe_server):
    forged = "/model/x%0a2026-12-02%2000:00:00,000%20INFO%20scorer_core.access:%20POST%20/model/score%20200"
    with probe_server(env={"SCORER_ACCESS_LOG": "true"}, record_headers=False, **SPEC) as target:
        assert target.get(forged).status == 404
        lines = [ln for ln in logged_after(target, 1).splitlines() if "scorer_core.access: " in ln]
    assert not any(ln.startswith("2026-12-02 00:00:00,000") for ln in lines)
    assert any("GET /model/x%0A2026-12-02%2000:00:00,000%20INFO" in ln for ln in lines)


def test_an_unknown_log_format_stops_start_up(probe_file):
    result = scorer(
        "serve", str(probe_file(**SPEC)), "--port", str(free_port()), env=plugin_env(SCORER_LOG_FORMAT="xml")
    )
    assert result.returncode == 2
    assert "SCORER_LOG_FORMAT='xml'" in result.stderr and "expected text or json" in result.stderr


FORGED = "2026-12-06 06:00:00,000 CRITICAL scorer_core.auth: FORGED"


def rogue_model(directory, **spec) -> str:
    """A `.rogue` model file (tests/plugins/rogue_plugin.py)."""
    path = directory / f"model-{len(list(directory.glob('*.rogue')))}.rogue"
    path.write_text(json.dumps(spec))
    return str(path)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_cell_a_model_echoes_cannot_forge_a_text_log_line_or_reach_the_terminal(tmp_path, workers):
    model = rogue_model(tmp_path, rogue="echo", inputs=[["colour", "Str"]], outputs=[["y", "Float64"]])
    cell = f"mauve\n{FORGED} \x1b[2J\x1b[31m\r\u2028"
    env = plugin_env("rogue_plugin", BATCH_WORKERS=workers)
    with start_server(model, env=env, record_headers=False) as target:
        reply = target.post("/model/score", {"fields": ["colour"], "rows": [[cell]]})
        log = target.server_log()  # the failure is logged before it is answered
    assert reply.status == 500 and FORGED in reply.json()["detail"], reply.text  # JSON escapes it
    assert not [line for line in log.splitlines() if line.startswith(FORGED)], log
    assert not {"\x1b", "\r", "\u2028"} & set(log), "control characters reach the terminal"
    failures = [line for line in log.splitlines() if "Found unknown categories" in line]
    escaped = "mauve\\n2026-12-06 06:00:00,000 CRITICAL scorer_core.auth: FORGED \\x1b[2J\\x1b[31m\\r\\u2028"
    assert failures and all(escaped in line and " ERROR " in line for line in failures), log


def test_a_model_echoing_a_huge_cell_logs_and_answers_only_its_start(tmp_path):
    model = rogue_model(tmp_path, rogue="echo", inputs=[["colour", "Str"]], outputs=[["y", "Float64"]])
    with start_server(model, env=plugin_env("rogue_plugin"), record_headers=False) as target:
        reply = target.post("/model/score", {"fields": ["colour"], "rows": [["m" * 4_000_000]]}, timeout=60)
        log = target.server_log()
    assert reply.status == 500, reply.text
    detail = reply.json()["detail"]
    message = len("Found unknown categories [") + 4_000_000 + len("] in column 0")
    assert len(detail) < 2200 and detail.endswith(f"...({message} characters)"), detail[-200:]
    assert "Found unknown categories [mmm" in detail
    assert len(log) < 20_000, "the model's message is logged cut, as it is answered"


def test_grpc_calls_have_access_lines_with_their_request_id_and_rows(probe_server):
    import numpy as np
    import tritonclient.grpc as triton

    port = free_port()
    env = {"SCORER_LOG_FORMAT": "json", "SCORER_ACCESS_LOG": "true", "SCORER_GRPC_PORT": str(port)}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            tensor = triton.InferInput("x", [3], "FP64")
            tensor.set_data_from_numpy(np.array([1.0, 2.0, 3.0]))
            result = client.infer("model-0", [tensor], headers={"x-request-id": "grpc-7"})
            assert result.as_numpy("y").tolist() == [2.0, 4.0, 6.0]
        finally:
            client.close()
        path = "/inference.GRPCInferenceService/ModelInfer"
        wait_for(lambda: path in target.server_log(), what="the gRPC call's access line")
        entries = [json.loads(line) for line in target.server_log().splitlines() if line.strip()]
    (line,) = [e for e in entries if e["logger"] == "scorer_core.access" and e["path"] == path]
    assert (line["request_id"], line["endpoint"], line["status"], line["rows"]) == ("grpc-7", "grpc_infer", 200, 3)
    assert line["method"] == "POST" and re.fullmatch(r"127\.0\.0\.1:[1-9][0-9]*", line["client"]), line
