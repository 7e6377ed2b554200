"""conformance.forkserver, and scorer_core's forkserver under it: a forked child starts as the
fresh ``python -m`` it replaces would."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.forkserver import ForkedProcess, Forkserver
from scorer_core.execution.workers.forkserver import Forkserver as CoreForkserver
from tests.conftest import children, dead, is_forkserver, wait_for

pytestmark = pytest.mark.slow  # it starts processes

#: A module that reports what it started with, then exits with the code its first argument says.
REPORTER = """
import json, os, resource, sys, time
preloaded = "numpy" in sys.modules  # before this module imports it
import numpy
facts = {
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "env": os.environ.get("FORKSERVER_TEST_VALUE"),
    "path": sys.path[:3],
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "random": numpy.random.random(),
    "preloaded": preloaded,
    "main": __name__,
}
print(json.dumps(facts), flush=True)
if sys.argv[1] == "hang":
    time.sleep(60)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def forkserver() -> Iterator[Forkserver]:
    with Forkserver(["numpy.random"]) as server:  # its generator seeded in the forkserver
        yield server


@pytest.fixture
def reporter(tmp_path: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH holds the reporting module, ``reporter``."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "reporter.py").write_text(REPORTER)
    return {**os.environ, "PYTHONPATH": str(tmp_path / "lib"), "FORKSERVER_TEST_VALUE": "given"}


def run(launch: Any, env: dict[str, str], tmp_path: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    output = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.txt"
    with open(output, "wb") as file:
        process = launch([sys.executable, "-m", "reporter", *args], env, file)
    process.wait(timeout=60)
    return process, json.loads(output.read_text().splitlines()[0])


def test_a_forked_child_gets_the_environment_path_arguments_and_limits_it_was_given(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run(forkserver, reporter, tmp_path, "0")  # the forkserver runs, with this process's limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 4000) - 7  # this process's limit now; the forkserver started with another
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        process, facts = run(forkserver, reporter, tmp_path, "0", "--flag")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    _, fresh = run(lambda c, e, o: subprocess.Popen(c, env=e, stdout=o), reporter, tmp_path, "0", "--flag")
    assert isinstance(process, ForkedProcess)
    assert process.returncode == 0
    assert facts["preloaded"] and facts["main"] == "__main__"
    assert facts["nofile"] == [lowered, hard]
    for fact in ("argv", "cwd", "env", "path"):
        assert facts[fact] == fresh[fact], fact
    assert facts["path"][:2] == [str(tmp_path), str(tmp_path / "lib")]


def test_each_child_draws_its_own_random_numbers(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path
) -> None:
    draws = {run(forkserver, reporter, tmp_path, "0")[1]["random"] for _ in range(3)}
    assert len(draws) == 3


def test_exit_codes_and_signals_are_reported_as_popen_reports_them(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path
) -> None:
    assert run(forkserver, reporter, tmp_path, "3")[0].returncode == 3
    with open(tmp_path / "hang.txt", "wb") as output:
        process = forkserver([sys.executable, "-m", "reporter", "hang"], reporter, output)
    assert process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    process.kill()  # after its end: nothing is signalled, as with Popen


def test_a_preloaded_module_runs_as_main_as_a_fresh_interpreter_runs_it(tmp_path: Path) -> None:
    document = tmp_path / "document.json"
    document.write_text('{"b": [1, 2]}')
    outputs, kinds = [], []
    with Forkserver(["json.tool"]) as server:
        for launch in (server, lambda c, e, o: subprocess.Popen(c, env=e, stdout=o, stderr=o)):
            with open(tmp_path / f"out-{len(outputs)}.txt", "wb") as output:
                process = launch([sys.executable, "-m", "json.tool", str(document)], dict(os.environ), output)
            assert process.wait(timeout=60) == 0
            kinds.append(type(process))
            outputs.append((tmp_path / f"out-{len(outputs)}.txt").read_text())
    assert kinds == [ForkedProcess, subprocess.Popen]
    assert outputs[0] == outputs[1] == '{\n    "b": [\n        1,\n        2\n    ]\n}\n'  # no runpy warning


@pytest.mark.parametrize(
    "change",
    ["another start-up variable", "a sitecustomize on the path", "not python -m"],
)
def test_what_a_fork_cannot_honour_starts_a_fresh_interpreter(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path, change: str
) -> None:
    command = [sys.executable, "-m", "reporter", "0"]
    if change == "another start-up variable":
        reporter["PYTHONWARNINGS"] = "error"
    elif change == "a sitecustomize on the path":
        (tmp_path / "lib" / "sitecustomize.py").write_text("")
    else:
        command = [sys.executable, str(tmp_path / "lib" / "reporter.py"), "0"]
    with open(tmp_path / "out.txt", "wb") as output:
        process = forkserver(command, reporter, output)
    assert isinstance(process, subprocess.Popen)
    assert process.wait(timeout=60) == 0


def test_closing_ends_the_forkserver_and_leaves_its_children_running(
    reporter: dict[str, str], tmp_path: Path
) -> None:
    with Forkserver([]) as server, open(tmp_path / "hang.txt", "wb") as output:
        child = server([sys.executable, "-m", "reporter", "hang"], reporter, output)
        parent = server._parent
        assert parent is not None
    assert parent.poll() is not None  # closed with the block
    try:
        state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in "RS", state  # running or sleeping, not a zombie: its caller stops it
    finally:
        child.kill()


def test_a_child_whose_forkserver_died_can_still_be_stopped(reporter: dict[str, str], tmp_path: Path) -> None:
    with Forkserver([]) as server, open(tmp_path / "hang.txt", "wb") as output:
        child = server([sys.executable, "-m", "reporter", "hang"], reporter, output)
        assert server._parent is not None
        server._parent.kill()
        child.terminate()  # through its pidfd: the forkserver is not needed for that
        assert child.wait(timeout=30) == -signal.SIGKILL  # its code went with the forkserver


def test_one_thread_waits_while_another_polls_and_stops_the_child(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path
) -> None:
    with open(tmp_path / "hang.txt", "wb") as output:
        child = forkserver([sys.executable, "-m", "reporter", "hang"], reporter, output)
    waiter = threading.Thread(target=child.wait)
    waiter.start()
    started = time.monotonic()
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.2)
    child.terminate()
    waiter.join(timeout=30)
    assert not waiter.is_alive() and child.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 20


def test_a_client_gone_before_its_pid_leaves_the_forkserver_serving(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path
) -> None:
    run(forkserver, reporter, tmp_path, "0")  # running
    request = {"argv": ["-m", "reporter", "hang"], "env": reporter, "cwd": str(tmp_path), "rlimits": {}}
    for _ in range(3):
        with socket.socket(socket.AF_UNIX) as gone, open(tmp_path / "hang.txt", "wb") as output:
            gone.connect("\0" + forkserver._name)
            socket.send_fds(gone, [json.dumps(request).encode() + b"\n"], [output.fileno()])
    assert run(forkserver, reporter, tmp_path, "4")[0].returncode == 4


def test_a_temporary_directory_too_deep_for_a_socket_path_is_no_matter(
    reporter: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 100) / ("e" * 100)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # what tempfile read from TMPDIR, cached
    with Forkserver([]) as server:
        process, _ = run(server, reporter, tmp_path, "0")
    assert isinstance(process, ForkedProcess)


# scorer_core's own Forkserver, as WorkerPool uses it: started with its caller's whole environment
# (PYTHONPATH too), two outputs, and a report of what it preloaded.

#: A module that prints its sys.path, then a line on each output.
PATH_REPORTER = """
import json, sys
print(json.dumps(sys.path), flush=True)
print("to stderr", file=sys.stderr, flush=True)
"""


@pytest.fixture
def libraries(tmp_path: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH holds ``path_reporter``, ``threader`` (starts a thread when
    imported), ``chatty`` (prints when imported) and ``broken`` (raises when imported)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "path_reporter.py").write_text(PATH_REPORTER)
    (lib / "threader.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), name='poller', daemon=True).start()\n"
    )
    (lib / "chatty.py").write_text("print('hello from chatty')\n")
    (lib / "broken.py").write_text("raise ImportError('broken on purpose')\n")
    return {**os.environ, "PYTHONPATH": str(lib), "PYTHONSAFEPATH": "1"}


def spawn_and_read(server: CoreForkserver, env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        child = server.spawn([sys.executable, "-m", "path_reporter"], env, stdout.fileno(), stderr.fileno())
    assert child is not None, server.failure
    assert child.wait(timeout=60) == 0
    return out.read_text(), err.read_text()


@pytest.mark.parametrize("entries", ["as given", "relative and twice"])
def test_a_child_of_a_forkserver_started_with_a_pythonpath_has_a_fresh_interpreters_path(
    libraries: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: str
) -> None:
    if entries == "relative and twice":
        monkeypatch.chdir(tmp_path)
        libraries["PYTHONPATH"] = os.pathsep.join(["lib", libraries["PYTHONPATH"], "lib"])
    fresh = subprocess.run(
        [sys.executable, "-m", "path_reporter"], env=libraries, capture_output=True, text=True, check=True
    )
    with CoreForkserver(["path_reporter", "chatty"], libraries) as server:
        out, err = spawn_and_read(server, libraries, tmp_path)
    assert json.loads(out) == json.loads(fresh.stdout)  # no entry twice, none missing, same order
    assert err == "to stderr\n"


def test_modules_that_fail_to_import_or_print_are_logged_and_the_rest_preloaded(
    libraries: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="scorer_core.execution.workers.forkserver")
    with CoreForkserver(["broken", "chatty", "no_such_module_here", "path_reporter"], libraries) as server:
        out, _ = spawn_and_read(server, libraries, tmp_path)
    assert json.loads(out)
    notes = [r.getMessage() for r in caplog.records]
    assert any(n.startswith("The forkserver did not preload broken: ImportError") for n in notes), notes
    assert any(n.startswith("The forkserver did not preload no_such_module_here") for n in notes), notes
    assert server.failure is None


def test_a_module_that_starts_a_thread_when_imported_makes_every_child_start_afresh(
    libraries: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with CoreForkserver(["threader"], libraries) as server:
        assert server.spawn([sys.executable, "-m", "path_reporter"], libraries, 1, 2) is None
        assert server.spawn([sys.executable, "-m", "path_reporter"], libraries, 1, 2) is None  # not retried
    assert server.failure == "the forkserver refused to fork: its imports started threads (poller)"
    assert (
        "Processes start afresh, not forked: the forkserver refused to fork: its imports started threads (poller)"
        in caplog.text
    )


def test_only_the_process_that_started_the_forkserver_may_have_it_fork(
    forkserver: Forkserver, reporter: dict[str, str], tmp_path: Path
) -> None:
    """Its socket is abstract, so no file permission guards it, and its name is in
    /proc/net/unix for every local user to read: anyone else is refused, and nothing forked."""
    run(forkserver, reporter, tmp_path, "0")  # running
    marker = tmp_path / "forked-for-a-stranger"
    request = {
        "argv": ["-m", "reporter", "0"],
        "env": {**reporter, "FORKSERVER_TEST_VALUE": "stranger"},
        "cwd": str(tmp_path),
        "rlimits": {},
    }
    stranger = (
        "import json, socket, sys\n"
        "with socket.socket(socket.AF_UNIX) as s, open(sys.argv[2], 'wb') as out:\n"
        "    s.connect('\\0' + sys.argv[1])\n"
        "    try:\n"
        "        socket.send_fds(s, [sys.argv[3].encode() + b'\\n'], [out.fileno()])\n"
        "        print(repr(s.recv(64)))\n"
        "    except (BrokenPipeError, ConnectionResetError):\n"
        "        print('closed')\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", stranger, forkserver._name, str(marker), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() in ("b''", "closed")  # no pid: the connection closed unanswered
    assert marker.read_bytes() == b""  # nothing ran with that output
    assert run(forkserver, reporter, tmp_path, "5")[0].returncode == 5  # still serving its owner


def test_a_closed_forkserver_forks_nothing_more_and_starts_no_other(libraries: dict[str, str]) -> None:
    server = CoreForkserver(["path_reporter"], libraries)
    first = server.spawn([sys.executable, "-m", "path_reporter"], libraries, 1, 2)
    assert first is not None and first.wait(timeout=60) == 0
    parent = server._parent
    server.close()
    assert parent is not None and parent.poll() is not None
    assert server.spawn([sys.executable, "-m", "path_reporter"], libraries, 1, 2) is None
    assert server._parent is None and server.pid is None


def test_closing_a_forkserver_still_importing_kills_it_at_once(
    libraries: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "lib" / "slow.py").write_text("import time\ntime.sleep(120)\n")
    server = CoreForkserver(["slow"], libraries)
    answers: list[object] = []
    starter = threading.Thread(
        target=lambda: answers.append(server.spawn([sys.executable, "-m", "path_reporter"], libraries, 1, 2))
    )
    starter.start()
    wait_for(lambda: server._starting is not None, what="the forkserver starting")
    importing = server._starting
    assert importing is not None
    started = time.monotonic()
    server.close()
    starter.join(timeout=30)
    assert time.monotonic() - started < 10  # not the import's two minutes
    assert answers == [None] and importing.poll() is not None
    assert server.failure is None  # closed, not failed


def test_a_forkserver_still_importing_exits_when_its_starter_is_killed(
    libraries: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "lib" / "slow.py").write_text("import time\ntime.sleep(120)\n")
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from scorer_core.execution.workers.forkserver import Forkserver\n"
            "Forkserver(['slow'], os.environ).spawn([sys.executable, '-m', 'path_reporter'], os.environ, 1, 2)\n",
        ],
        env=libraries,
    )
    try:
        wait_for(
            lambda: [pid for pid in children(starter.pid) if is_forkserver(pid)],
            60,
            "the forkserver starting",
        )
        (forkserver,) = [pid for pid in children(starter.pid) if is_forkserver(pid)]
    finally:
        starter.kill()
        starter.wait()
    wait_for(lambda: dead(forkserver), 15, "the forkserver exiting with its starter, mid-import")
