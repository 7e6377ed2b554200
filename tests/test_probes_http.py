"""Probes that tell the truth, over real HTTP with real worker processes: /readyz is not ready
while no worker can take work, and /healthz fails only when restarting the server would help."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.slow

SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}


def worker_pid(target) -> int:
    lines = [ln for ln in target.server_log().splitlines() if "worker processes ready: pids" in ln]
    return int(lines[-1].rsplit("[", 1)[1].split("]")[0].split(",")[0])


def test_not_ready_while_the_only_worker_is_replaced_and_alive_throughout(probe_server):
    with probe_server(env={"BATCH_WORKERS": "1"}, record_headers=False, **SPEC) as target:
        assert target.get("/readyz").text == "Ready"
        os.kill(worker_pid(target), signal.SIGKILL)
        seen: list[tuple[int, str]] = []
        lives: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = target.get("/readyz")
            lives.add(target.get("/healthz").status)
            seen.append((ready.status, ready.text))
            if ready.status == 200 and len(seen) > 1:
                break
            time.sleep(0.02)
        not_ready = [text for status, text in seen if status == 500]
        assert not_ready, seen[:5]
        # Before the watch has seen the death (0.5 s at most), nothing is being replaced yet.
        assert all(
            re.fullmatch(r"Not ready: no worker process can take work \([01] of 1 being replaced\)", t)
            for t in not_ready
        ), not_ready
        assert seen[-1] == (200, "Ready")
        assert lives == {200}, "a worker being replaced is no reason to restart the server"
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).json()["score"] == [["4.0"]]


def test_unhealthy_once_dead_workers_cannot_be_replaced(probe_server, probe_file):
    """The model's file breaks after start, then the worker dies: every replacement fails to load
    (a short back-off here: SCORER_WORKER_RESTART_BACKOFF), and only then does /healthz ask for a
    restart."""
    env = {"BATCH_WORKERS": "1", "SCORER_WORKER_RESTART_BACKOFF": "0.2,0.2,0.2"}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        spec_file = next(arg for arg in target.process.args if str(arg).endswith(".probe"))  # type: ignore[union-attr]
        with open(spec_file, "w") as out:
            json.dump({"load_error": "the model file is gone"}, out)
        os.kill(worker_pid(target), signal.SIGKILL)
        wait_for(lambda: target.get("/readyz").status == 500, what="the server seeing its worker die")
        deadline = time.monotonic() + 120
        healthy = target.get("/healthz")
        while healthy.status == 200 and time.monotonic() < deadline:
            ready = target.get("/readyz")
            assert ready.status == 500 and ready.text.startswith("Not ready: no worker process"), ready.text
            time.sleep(1)
            healthy = target.get("/healthz")
        assert healthy.status == 500, "never unhealthy"
        assert healthy.text == (
            "Not healthy: every worker process died and starting replacements failed; restart the server"
        )
        assert target.get("/readyz").status == 500
        assert "Gave up replacing a worker process" in target.server_log()
