"""BATCH_WORKERS > 0: worker processes over Unix-socket IPC, with crashes and shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import conformance
from conformance import start_server
from tests.conftest import (
    children,
    dead,
    deep_directory,
    is_forkserver,
    model_calls,
    plugin_env,
    wait_for,
    workers_of,
)

pytestmark = pytest.mark.slow


def test_workers_score_and_merge_requests(probe_server):
    spec = {"outputs": [["y", "Float64"], ["batch_rows", "Int64"]], "score_delay": 0.02}
    with probe_server(env={"BATCH_WORKERS": "2"}, record_headers=False, **spec) as target:
        assert len(workers_of(target.process.pid)) == 2
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(32) as pool:
            replies = list(
                pool.map(
                    lambda i: target.post("/model/score", {"fields": ["x"], "rows": [[str(i)]]}),
                    range(20, 120),
                )
            )
    assert all(r.status == 200 for r in replies)
    assert [float(r.json()["score"][0][0]) for r in replies] == [2.0 * i for i in range(20, 120)]
    assert max(int(r.json()["score"][0][1]) for r in replies) > 1


def test_killed_worker_fails_its_request_clearly_and_is_replaced(probe_server):
    # Share 1: the answer at once, not held by the restart it cost (tests/test_worker_crashes_http.py).
    env = {"BATCH_WORKERS": "1", "SCORER_FAILURE_SHARE": "1"}
    with probe_server(env=env, score_delay=2.0) as target:  # recording each call as it starts
        (worker,) = workers_of(target.process.pid)
        result = {}
        client = threading.Thread(
            target=lambda: result.setdefault(
                "reply", target.post("/model/score", {"fields": ["x"], "rows": [["1"]]})
            )
        )
        client.start()
        wait_for(lambda: model_calls(target) == 1, what="the worker scoring the request")
        os.kill(worker, signal.SIGKILL)
        client.join(timeout=30)
        reply = result["reply"]
        assert reply.status == 500
        assert (
            f"worker process {worker} died while scoring this request (killed by signal SIGKILL)"
            in reply.json()["detail"]
        )
        wait_for(
            lambda: len(workers_of(target.process.pid)) == 1 and workers_of(target.process.pid) != [worker]
        )
        again = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]})
        assert again.status == 200 and again.json()["score"] == [["4.0"]]


def test_worker_killed_while_idle_costs_no_request(probe_server):
    with probe_server(env={"BATCH_WORKERS": "2"}, record_headers=False) as target:
        victim = workers_of(target.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: dead(victim), what="the worker dead")  # the requests come after the death
        replies = [target.post("/model/score", {"fields": ["x"], "rows": [[str(i)]]}) for i in range(20, 30)]
        assert [r.status for r in replies] == [200] * 10
        wait_for(
            lambda: len(workers_of(target.process.pid)) == 2 and victim not in workers_of(target.process.pid)
        )


def test_a_replacement_that_fails_to_load_is_tried_again(probe_server):
    """A replacement whose model (or plugin) raises a configuration error at load is retried with
    back-off like any failed start, so the slot comes back once the cause is fixed."""
    with probe_server(env={"BATCH_WORKERS": "1"}, record_headers=False) as target:
        spec_file = Path(next(a for a in target.process.args if str(a).endswith(".probe")))  # type: ignore[union-attr]
        spec_file.write_text('{"configuration_error": "set PROBE_WEIGHTS"}')
        (victim,) = workers_of(target.process.pid)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "Replacement worker failed to start: set PROBE_WEIGHTS" in target.server_log())
        spec_file.write_text("{}")
        wait_for(lambda: target.get("/readyz").status == 200, timeout=60)
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).json()["score"] == [["4.0"]]


def test_model_that_fails_to_load_in_a_worker_stops_the_server(probe_file):
    with (
        pytest.raises(RuntimeError) as excinfo,
        start_server(
            probe_file(load_error="no weights"), env=plugin_env(BATCH_WORKERS="2"), record_headers=False
        ),
    ):
        pass
    assert "exited with code 1" in str(excinfo.value)
    assert "a worker process failed to load the model" in str(excinfo.value) and "no weights" in str(
        excinfo.value
    )


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_configuration_error_at_load_reads_the_same_with_or_without_workers(probe_file, workers):
    import subprocess
    import sys

    model = probe_file(configuration_error="set PROBE_WEIGHTS to the weights file")
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", "--port", "0", str(model)],
        env={**os.environ, **plugin_env(BATCH_WORKERS=workers)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "scorer: error: the model failed to load: set PROBE_WEIGHTS to the weights file"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("forked", ["true", "false"])
def test_workers_are_forked_from_one_forkserver_unless_turned_off(probe_server, forked):
    env = {"BATCH_WORKERS": "2", "SCORER_WORKER_FORKSERVER": forked}
    with probe_server(env=env, record_headers=False) as target:
        direct = children(target.process.pid)
        workers = workers_of(target.process.pid)
        assert len(workers) == 2
        if forked == "true":
            (forkserver,) = direct
            assert is_forkserver(forkserver) and children(forkserver) == workers
        else:
            assert direct == workers and not any(is_forkserver(pid) for pid in direct)
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["21"]]})
        assert reply.status == 200 and reply.json()["score"] == [["42.0"]]


def test_a_killed_forkserver_takes_its_workers_along_and_both_come_back(probe_server):
    """Its workers exit when it does (their watchdog follows their parent), so that none is left
    unwatched; the pool replaces them from a forkserver started anew."""
    with probe_server(env={"BATCH_WORKERS": "2"}, record_headers=False) as target:
        (forkserver,) = children(target.process.pid)
        first = workers_of(target.process.pid)
        os.kill(forkserver, signal.SIGKILL)
        wait_for(lambda: all(dead(pid) for pid in first), what="the forkserver's workers exiting")
        wait_for(
            lambda: len(workers_of(target.process.pid)) == 2 and target.get("/readyz").status == 200,
            timeout=60,
            what="two new workers ready",
        )
        (again,) = children(target.process.pid)
        assert again != forkserver and is_forkserver(again)
        assert not set(workers_of(target.process.pid)) & set(first)
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["21"]]})
        assert reply.status == 200 and reply.json()["score"] == [["42.0"]]


def test_a_server_killed_with_sigkill_leaves_neither_forkserver_nor_worker_behind(probe_server):
    with probe_server(env={"BATCH_WORKERS": "2"}, record_headers=False) as target:
        left = workers_of(target.process.pid) + children(target.process.pid)
        assert len(left) == 3  # two workers and their forkserver
        target.process.kill()
        target.process.wait(timeout=30)
        wait_for(
            lambda: all(dead(pid) for pid in left), timeout=15, what="the forkserver and workers exiting"
        )


def test_shutdown_leaves_no_worker_behind(probe_server):
    with probe_server(env={"BATCH_WORKERS": "2"}, record_headers=False) as target:
        workers = workers_of(target.process.pid)
        assert len(workers) == 2
        workers += children(target.process.pid)  # the forkserver, which must not outlive it either
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
        )


def _empty_probe(fixture) -> Path:
    model = fixture("tmp_path_factory").mktemp("workers") / "model.probe"
    model.write_text("{}")
    return model


class TestWorkerModeConformance(conformance.RuntimeSuite):
    """The whole contract, header forwarding included, with the model in two worker processes."""

    scorer_target = conformance.served(_empty_probe, env=plugin_env(BATCH_WORKERS="2"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A directory of its own under /tmp: the pool's Unix sockets go in TMPDIR, and a socket's
    path must fit in 107 bytes, which a pytest-xdist worker's tmp_path (one level deeper) does not."""
    with tempfile.TemporaryDirectory(prefix="scorer-test-", dir="/tmp") as path:
        yield Path(path)


def test_sigterm_while_workers_load_stops_them_and_exits_cleanly(probe_file, short_tmp_path):
    tmp_path = short_tmp_path
    model = probe_file(load_delay=30)
    env = {**os.environ, **plugin_env(BATCH_WORKERS="1"), "TMPDIR": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "scorer_core.cli", "serve", "--port", "0", str(model)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # A liveness bound, generous: beside other tests, start-up alone took over 30 s here.
        wait_for(lambda: workers_of(server.pid), 120, "a worker process starting")
        workers = workers_of(server.pid) + children(server.pid)  # and the forkserver, if any
        time.sleep(1)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    finally:
        server.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "a worker outlived the server"
    assert not list(tmp_path.glob("scorer-workers-*")), "the workers' socket directory was left behind"


def test_workers_start_and_score_under_a_tmpdir_too_deep_for_their_sockets(probe_server, tmp_path):
    """A Unix socket's path holds at most 107 bytes: under a 150-byte TMPDIR, binding the workers'
    sockets failed ("AF_UNIX path too long") and the server never started. They now go in a private
    directory under /tmp, removed when the server stops."""
    deep = deep_directory(tmp_path, 150)
    with probe_server(env={"BATCH_WORKERS": "1", "TMPDIR": str(deep)}, record_headers=False) as target:
        assert len(workers_of(target.process.pid)) == 1
        # A forked worker's command line is its forkserver's: the log says where the sockets went.
        found = re.search(
            r"TMPDIR is too deep for the workers' sockets; they are in (\S+)", target.server_log()
        )
        assert found, target.server_log()[-3000:]
        (socket_path,) = Path(found.group(1)).glob("worker-*.sock")
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["21"]]})
        assert reply.status == 200, reply.text
        assert reply.json()["score"] == [["42.0"]]
        assert socket_path.parent.parent == Path("/tmp") and len(os.fsencode(socket_path)) <= 107
        assert socket_path.parent.stat().st_mode & 0o777 == 0o700
        assert list(deep.iterdir()) == [], "the deep TMPDIR was left a socket directory"
    assert target.process.returncode == 0
    assert not socket_path.parent.exists(), "the sockets' directory under /tmp outlived the server"
