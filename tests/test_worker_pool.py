"""``WorkerPool`` driven directly, as an embedder would: real worker processes, no HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scorer_core.config.settings import Settings, load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.execution.isolation import BatchReport
from scorer_core.execution.scoring import ScoringResult
from scorer_core.execution.workers.pool import SHARED_FORKSERVERS, WorkerPool, has_exited, socket_directory
from tests.batching.conftest import task
from tests.conftest import INSTALLED_PLUGINS, dead, deep_directory, plugin_env, wait_for


@pytest.fixture
def start_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., WorkerPool]]:
    """Start a pool of probe-model workers under ``Settings`` built in code; shut down after."""
    # Only what lets the worker import the probe plugin comes from the environment.
    monkeypatch.setenv("PYTHONPATH", plugin_env()["PYTHONPATH"])
    pools: list[WorkerPool] = []

    def start(model: Path, count: int = 1, **settings: object) -> WorkerPool:
        code = Settings(extra_plugins="probe_plugin", disable_plugins=INSTALLED_PLUGINS, **settings)
        pool = WorkerPool(code, model, "probe-scorer", count)
        pools.append(pool)
        pool.start()
        return pool

    yield start
    for pool in pools:
        pool._shutdown()


def pool_processes(pool: WorkerPool, forkserver: int | None = None) -> set[int]:
    """Live processes started for ``pool``: those whose command line names its socket folder, and
    the children of its forkserver (a forked worker's command line is the forkserver's), whose pid
    is ``forkserver`` once the pool has closed it, and the forkserver itself."""
    if forkserver is None and pool._forkserver is not None:
        forkserver = pool._forkserver.pid
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes()
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        ours = str(pool._dir).encode() in command or forkserver in (int(parent), int(entry.name))
        if ours and state != "Z":
            found.add(int(entry.name))
    return found


@pytest.mark.slow
def test_a_worker_loads_the_model_under_the_settings_the_server_was_given_in_code(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment says otherwise, and the worker inherits it: the settings passed in code win,
    because the worker receives them instead of reading the environment again."""
    monkeypatch.setenv("MODEL_ID", "from-the-environment")
    monkeypatch.setenv("SCORER_EXTRA_PLUGINS", "no_such_plugin")
    monkeypatch.setenv("SHAPLEY_ENABLE", "true")
    pool = start_pool(probe_file(contributions=["ORIGINAL"]), model_id="from-code", shapley_enable="false")
    assert pool.facts.model_id == "from-code"
    assert pool.facts.shapley.enabled == frozenset()


@pytest.mark.slow
def test_restarts_leave_the_pool_no_record_of_dead_processes(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path]
) -> None:
    pool = start_pool(probe_file(), count=2)
    for restarts in range(1, 5):
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: pool.restarts == restarts, timeout=60, what=f"restart {restarts}")  # noqa: B023
        assert victim not in pool.pids
    assert len(pool.workers) == 2
    assert not pool._spawned, "a registered worker is still counted as starting"
    forkserver = {pool._forkserver.pid} if pool._forkserver is not None else set()
    assert set(pool.pids) == pool_processes(pool) - forkserver, "the registry and the live workers differ"


def test_the_restart_backoff_is_read_as_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().restart_backoff == (1.0, 2.0, 5.0, 10.0, 30.0)
    monkeypatch.setenv("SCORER_WORKER_RESTART_BACKOFF", "0.5, 2")
    assert load_settings().restart_backoff == (0.5, 2.0)
    monkeypatch.setenv("SCORER_WORKER_RESTART_BACKOFF", "")
    assert load_settings().restart_backoff == ()


@pytest.mark.parametrize("value", ["1,x", "-1", "nan", "inf", "1,,2"])
def test_a_bad_restart_backoff_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SCORER_WORKER_RESTART_BACKOFF", value)
    with pytest.raises(ConfigurationError, match=f"SCORER_WORKER_RESTART_BACKOFF='{value}'.*seconds"):
        load_settings()


@pytest.mark.slow
def test_no_worker_is_started_after_the_pool_closed_during_a_restart_back_off(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A replacement's first try fails, and the pool closes during the back-off before the next;
    the closing is held up by a stopped worker meanwhile, as by one finishing a long call, so the
    socket folder is still there when the back-off ends."""
    model = probe_file()
    pool = start_pool(model, count=2, worker_restart_backoff="1")
    victim, stuck = pool.pids
    model.write_text('{"load_error": "the weights are being copied"}')
    caplog.set_level(logging.ERROR, logger="scorer_core.execution.workers.pool")
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "Replacement worker failed to start" in caplog.text, timeout=60, what="a failed try")
    model.write_text("{}")
    os.kill(stuck, signal.SIGSTOP)  # it cannot read Stop: the closing waits 10 s for it, then kills it
    forkserver = pool._forkserver.pid if pool._forkserver is not None else None
    assert forkserver is not None  # the default: its workers are forked
    closing = threading.Thread(target=pool._shutdown)
    closing.start()
    try:
        closing.join(timeout=60)
        assert not closing.is_alive()
        assert pool.pids == [], "a worker was registered after the pool closed"
        assert pool_processes(pool, forkserver) == set(), "a worker process outlived the pool"
        assert "Replacement worker process" not in caplog.text
    finally:
        for pid in pool_processes(pool, forkserver):
            os.kill(pid, signal.SIGKILL)


def test_a_process_is_seen_to_have_exited_while_another_thread_holds_its_wait_lock() -> None:
    """``Popen.poll()`` answers None, as for a live process, while another thread holds the
    ``Popen``'s wait lock, as the pool's watch thread does every half second: the pool asks the
    kernel instead, and leaves the exit status for ``wait``."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # until it has exited; not reaped
        with process._waitpid_lock:  # type: ignore[attr-defined]
            assert process.poll() is None, "CPython's poll() no longer answers None here"
            assert has_exited(process)
        assert process.wait(timeout=30) == 0, "the exit status was taken from wait()"
        assert has_exited(process)
    finally:
        process.kill()
        process.wait()


def unread_bytes(connection: socket.socket) -> int:
    """Bytes sent on a Unix socket that its peer has not read yet (``SIOCOUTQ``)."""
    queued = fcntl.ioctl(connection, termios.TIOCOUTQ, b"\0\0\0\0")
    return int.from_bytes(queued, sys.byteorder, signed=True)


@pytest.mark.slow
def test_a_batch_left_unread_by_a_worker_that_died_is_scored_on_another(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path]
) -> None:
    """A killed worker's socket takes a batch until its last thread has exited, though /proc shows
    it a zombie already: the batch never reached the model, so it is scored on another worker, not
    answered as a crash of its request. A stopped worker holds the batch unread as long as needed."""
    pool = start_pool(probe_file(), count=2)
    first = next(w for w in pool._all if w.index == 0)  # the first one idle, so the first one sent to
    os.kill(first.process.pid, signal.SIGSTOP)
    result: dict[str, BatchReport] = {}

    def call() -> None:
        one = task([2.0], deadline=time.monotonic() + 60)
        result["report"] = asyncio.run(pool([one], lambda pairs: None))

    caller = threading.Thread(target=call)
    caller.start()
    try:
        wait_for(lambda: unread_bytes(first.connection) > 0, what="the batch sent to the stopped worker")
        os.kill(first.process.pid, signal.SIGKILL)
        caller.join(timeout=60)
        assert not caller.is_alive(), "the batch was not answered"
    finally:
        first.process.kill()  # a no-op once it has been waited for
        caller.join(timeout=60)
    (outcome,) = result["report"].outcomes
    assert isinstance(outcome, ScoringResult), f"the batch failed: {outcome!r}"
    assert outcome.outputs is not None
    assert outcome.outputs["y"].tolist() == [4.0]
    wait_for(lambda: pool.restarts == 1, timeout=60, what="the dead worker replaced")


def open_sockets() -> set[int]:
    """This process's file descriptors that are sockets."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor, closed once listed
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(int(fd))
    return found


@pytest.mark.slow
def test_failed_replacements_leave_no_socket_open(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed try used to leave the accepted connection open (until the collector found it)."""
    model = probe_file()
    pool = start_pool(model, count=1, worker_restart_backoff="0.01, 0.01, 0.01, 0.01")
    before = open_sockets()
    model.write_text('{"load_error": "the weights are being copied"}')
    (victim,) = pool.pids
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "Gave up replacing" in caplog.text, timeout=120, what="every replacement failed")
    assert caplog.text.count("Replacement worker failed to start") == 5
    after = open_sockets()  # the dead worker's connection closed, and nothing opened since
    assert len(after) < len(before), f"failed replacements left sockets open: {sorted(after - before)}"


def test_the_sockets_go_in_a_private_directory_under_tmp_when_tmpdir_is_too_deep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = deep_directory(tmp_path, 150)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # what TMPDIR sets, read once per process
    directory = socket_directory()
    try:
        assert directory.parent == Path("/tmp")
        assert directory.stat().st_mode & 0o777 == 0o700
        assert list(deep.iterdir()) == [], "a directory was left in the deep TMPDIR"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(directory / f"worker-{2**64}.sock"))  # the longest name a worker gets
    finally:
        shutil.rmtree(directory)


def test_a_tmpdir_that_fits_the_sockets_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    shallow = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(shallow))
        assert socket_directory().parent == shallow
    finally:
        shutil.rmtree(shallow)


@pytest.mark.parametrize("fallback", ["deep", "missing"])
def test_no_short_directory_for_the_sockets_is_a_configuration_error_naming_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallback: str
) -> None:
    deep = deep_directory(tmp_path, 150)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    where = str(deep if fallback == "deep" else tmp_path / "missing")
    reason = "is too deep as well" if fallback == "deep" else "no directory could be made under"
    with pytest.raises(ConfigurationError, match=f"at most 107 bytes.*{reason}.*Set TMPDIR to a shorter"):
        socket_directory(fallback=where)
    assert list(deep.iterdir()) == []


@pytest.mark.slow
def test_pools_of_one_family_share_a_forkserver_until_the_last_closes(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path]
) -> None:
    """As during a replacement: the new pool forks its workers from the forkserver of the pool it
    replaces, which outlives that pool while the new one serves."""
    old = start_pool(probe_file(), count=1)
    new = start_pool(probe_file(model_id="next"), count=1)
    assert old._forkserver is not None and old._forkserver is new._forkserver
    shared = old._forkserver
    forkserver = shared.pid
    assert forkserver is not None and len(SHARED_FORKSERVERS) == 1
    old._shutdown()
    (victim,) = new.pids
    os.kill(victim, signal.SIGKILL)  # the new pool's replacement is forked by the same forkserver
    wait_for(lambda: new.restarts == 1, timeout=60, what="the replacement")
    assert shared.pid == forkserver and pool_processes(new) == {forkserver, *new.pids}
    new._shutdown()
    assert shared.pid is None and len(SHARED_FORKSERVERS) == 0
    wait_for(lambda: dead(forkserver), what="the forkserver gone")
