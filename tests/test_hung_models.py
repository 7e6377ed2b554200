"""A model call that never returns: it must cost neither the server nor its shutdown.

Over real sockets on loopback; every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from conformance import start_server
from tests.conftest import model_calls, plugin_env, wait_for

pytestmark = pytest.mark.slow

HANG = {"fields": ["x"], "rows": [["99"]]}
GOOD = {"fields": ["x"], "rows": [["2"]]}


def first_200(target, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = target.post("/model/score", GOOD, timeout=10)
        if reply.status == 200:
            return reply
        time.sleep(0.2)
    raise AssertionError(f"no 200 within {seconds} s; last: {reply.status} {reply.text}")


def test_a_hung_worker_is_killed_at_the_deadline_and_replaced(probe_server):
    env = {"BATCH_WORKERS": "1", "SCORER_REQUEST_TIMEOUT": "1"}
    with probe_server(env=env, record_headers=False, hang_on=99) as target:
        started = time.monotonic()
        reply = target.post("/model/score", HANG, timeout=30)
        assert reply.status == 504, reply.text
        assert time.monotonic() - started < 5
        assert "SCORER_REQUEST_TIMEOUT" in reply.text
        assert first_200(target, 30).json()["score"] == [["4.0"]]
        log = target.server_log()
        assert "did not answer within 1 s (SCORER_REQUEST_TIMEOUT); killing it" in log
        assert "Replacement worker process" in log


def test_a_stuck_in_process_call_fails_the_health_probes(probe_server):
    env = {"SCORER_REQUEST_TIMEOUT": "1", "SCORER_STUCK_CALL_MARGIN": "1"}
    with probe_server(env=env, record_headers=False, hang_on=99) as target:
        assert target.get("/healthz").status == 200
        assert target.post("/model/score", HANG, timeout=30).status == 504
        deadline = time.monotonic() + 10
        while target.get("/healthz").status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        health = target.get("/healthz")
        assert health.status == 500 and "SCORER_STUCK_CALL_MARGIN" in health.text
        assert target.get("/readyz").status == 500


def test_sigterm_exits_within_the_grace_period_whatever_the_model_does(probe_server):
    env = {"SCORER_REQUEST_TIMEOUT": "60", "SCORER_SHUTDOWN_GRACE": "1"}
    with probe_server(env=env, hang_on=99) as target:  # recording each call as it starts
        import threading

        threading.Thread(target=lambda: target.post("/model/score", HANG, timeout=60), daemon=True).start()
        wait_for(lambda: model_calls(target) == 1, 30, "the hanging call to start")
        started = time.monotonic()
        target.process.send_signal(signal.SIGTERM)
        code = target.process.wait(timeout=30)
        assert time.monotonic() - started < 15, "the grace (1 s) plus the drain margin"
        assert code == 1
        assert "Shutdown did not finish within 1 s (SCORER_SHUTDOWN_GRACE)" in target.server_log()


def test_a_thread_the_model_leaves_running_neither_delays_a_stop_nor_fails_it(tmp_path):
    model = tmp_path / "model.rogue"
    model.write_text(json.dumps({"rogue": "leave_thread"}))  # tests/plugins/rogue_plugin.py
    with start_server(model, env=plugin_env("rogue_plugin"), record_headers=False) as target:
        assert target.post("/model/score", GOOD).json()["score"] == [["4.0"]]  # starts the thread
        started = time.monotonic()
        target.process.send_signal(signal.SIGTERM)
        code = target.process.wait(timeout=60)
        took = time.monotonic() - started
        log = target.server_log()
    assert code == 0, log
    assert took < 20, f"{took:.0f} s, with nothing in flight (SCORER_SHUTDOWN_GRACE is 30 s)"
    assert "a model call is stuck" not in log
    assert "'rogue-flusher'" in log, "the operator is told what was left running"
