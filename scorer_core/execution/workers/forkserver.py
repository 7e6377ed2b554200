"""Processes forked from a process that has imported their libraries once, instead of started afresh.

A worker process of an MLflow scikit-learn model spends about 2.3 of its 2.7 CPU-seconds of
start-up importing MLflow, pandas and scikit-learn before it reads the model. ``WorkerPool`` forks
its workers from a ``Forkserver`` that imported them once (``Runtime.preload_modules``), so that a
worker starts, and one that crashed is replaced, in a fraction of that, and the libraries' memory
pages are shared between the workers instead of copied into each. The conformance suite forks the
servers of a test session the same way (``conformance.forkserver``).

Each child is still a process of its own, with the environment, working directory, resource
limits, output and arguments it was given, running ``python -m`` as a fresh interpreter would (its
exit is the interpreter's own: threads joined, ``atexit`` handlers run, buffers flushed). What
differs: its libraries were imported before its environment was set (a library that reads a
variable when imported sees the forkserver's), and ``ps`` shows the forkserver's command line.

``spawn`` answers None, and the caller starts the command afresh, for a command that is not
``python -m MODULE ...`` of this interpreter, for an environment whose start-up variables
(``PYTHON...`` other than ``PYTHONPATH`` and ``PYTHONSAFEPATH``, which a child honours; the
locale's ``LC_ALL``, ``LC_CTYPE`` and ``LANG``) differ from the forkserver's or whose
``PYTHONPATH`` holds a ``sitecustomize`` or ``usercustomize`` module, and when the forkserver could
not start (or its imports started a thread: forking a process with threads is unsafe). Linux only
(pidfds, abstract sockets).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

__all__ = ["HONOURED_VARIABLES", "ChildProcess", "ForkedProcess", "Forkserver"]

log = logging.getLogger(__name__)

_PARENT_SCRIPT = Path(__file__).with_name("_forkserver_main.py")
#: Variables a child may set that a forked interpreter honours as a fresh one would.
HONOURED_VARIABLES = frozenset({"PYTHONPATH", "PYTHONSAFEPATH"})
#: Variables an interpreter reads when it starts, besides those it honours.
_STARTUP_PREFIXES = ("PYTHON", "LC_ALL", "LC_CTYPE", "LANG")
#: Modules that ``site`` imports when an interpreter starts.
_CUSTOMIZE = ("sitecustomize", "usercustomize")
#: Seconds the forkserver may take to import what it preloads.
_START_TIMEOUT = 600.0
#: Seconds a spawn may wait for the forkserver to answer with the child's pid.
_SPAWN_TIMEOUT = 30.0


class ChildProcess(Protocol):
    """A started child: the part of ``subprocess.Popen``'s interface that its callers use."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class ForkedProcess:
    """A forked child, with as much of ``subprocess.Popen``'s interface as ``ChildProcess`` names.

    It is watched through a pidfd, which the kernel makes readable when the child exits and which
    signals this very process, never a later one that reused its pid; the exit code itself comes
    from the forkserver, the child's parent. Any thread may poll, wait or signal at any time.
    """

    def __init__(self, args: list[str], pid: int, pidfd: int, connection: socket.socket) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        #: Whether the exit code was lost with the forkserver (``returncode`` then reads -SIGKILL).
        self.status_lost = False
        self._pidfd = pidfd
        self._connection = connection
        self._lock = threading.Lock()

    def exited(self) -> bool:
        """Whether the child has exited, from its pidfd alone: never waits for the forkserver to
        send the exit code, which ``poll`` does once the child has exited."""
        if self.returncode is not None:
            return True
        with self._lock:
            if self._pidfd < 0:
                return True
            watch = select.poll()
            watch.register(self._pidfd, select.POLLIN)
            return bool(watch.poll(0))

    def poll(self) -> int | None:
        return self._collect(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._collect(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):  # exited, not yet collected
                    signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _collect(self, timeout: float | None) -> int | None:
        """The exit code once the child has exited, waiting up to ``timeout`` seconds for it."""
        if self.returncode is not None:
            return self.returncode
        watch = select.poll()  # not select.select: a process may hold more than 1,024 files
        with self._lock:
            if self._pidfd < 0:
                return self.returncode
            # A copy of its own: another thread may collect the code and close the pidfd while
            # this one waits, and its number be reused by an unrelated file.
            pidfd = os.dup(self._pidfd)
        try:
            watch.register(pidfd, select.POLLIN)
            if not watch.poll(None if timeout is None else timeout * 1000):
                return None
        finally:
            os.close(pidfd)
        with self._lock:
            if self.returncode is None and self._pidfd >= 0:
                # The forkserver reaps the child and sends its code at once; should it have died
                # meanwhile, the code is lost, and -SIGKILL says so rather than a clean 0.
                self._connection.settimeout(30)
                try:
                    line = _read_line(self._connection)
                except OSError:
                    line = ""
                self._connection.close()
                os.close(self._pidfd)
                self._pidfd = -1
                self.returncode = int(line) if line else -signal.SIGKILL
                self.status_lost = not line
            return self.returncode


class Forkserver:
    """Starts, on the first ``spawn``, a process that imports ``preload`` and forks each child from
    itself. ``close`` ends that process for good; the children are their callers' to stop.

    ``environment`` (this process's by default, as it is now) is what the forkserver starts with:
    its libraries read their import-time variables from it, and its ``PYTHONPATH`` is where it
    finds them. A forkserver that fails to start, or whose imports started a thread, is not tried
    again: ``spawn`` answers None from then on.
    """

    def __init__(self, preload: Iterable[str], environment: Mapping[str, str] | None = None) -> None:
        self.preload = list(preload)
        self._environment = dict(os.environ if environment is None else environment)
        #: What the forkserver's interpreter started with, and its children therefore have.
        self._startup = _startup_variables(self._environment)
        self._parent: subprocess.Popen[bytes] | None = None
        #: Why the forkserver is not used, once it failed.
        self.failure: str | None = None
        self._closed = False
        #: The abstract socket's name (the parent prepends the NUL that makes it one: no path, so
        #: no TMPDIR too deep for one, and nothing left behind); a new one at each start, so that
        #: no other process can have taken it meanwhile.
        self._name = ""
        #: A forkserver still importing, which ``close`` may kill without waiting for the lock.
        self._starting: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The forkserver's own pid while it runs."""
        with self._lock:
            return None if self._parent is None else self._parent.pid

    def spawn(
        self, command: list[str], env: Mapping[str, str], stdout: int, stderr: int | None = None
    ) -> ForkedProcess | None:
        """``command`` forked with ``env`` (complete) in this process's working directory, its
        stdout and stderr going to those file descriptors (stderr to stdout's when None); None if
        it cannot be forked, and should be started afresh."""
        if not self._can_fork(command, env):
            return None
        running = self._started()
        if running is None:
            return None
        name, parent = running
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(_SPAWN_TIMEOUT)  # a forkserver stopped or hung fails this spawn only
        try:
            connection.connect("\0" + name)
            # An abstract name is no file: make sure it is ours that listens, before it is sent
            # this process's environment.
            peer = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            if peer != parent:
                raise RuntimeError(f"process {peer}, not the forkserver {parent}, listens on its socket")
            request = json.dumps(
                {"argv": command[1:], "env": dict(env), "cwd": os.getcwd(), "rlimits": _rlimits()}
            )
            outputs = [stdout] if stderr is None else [stdout, stderr]
            socket.send_fds(connection, [request.encode() + b"\n"], outputs)
            # The pidfd comes from the forkserver, opened before it could reap the child: one
            # opened here from the pid could find it gone, or another process under its pid.
            first, pidfds, _, _ = socket.recv_fds(connection, 1, 1)
            line = (first.decode() + _read_line(connection)).strip()
            if not line or len(pidfds) != 1:
                for fd in pidfds:
                    os.close(fd)
                raise RuntimeError("the forkserver refused to start a process; its stderr says why")
            return ForkedProcess(command, int(line), pidfds[0], connection)
        except BaseException:
            connection.close()  # the forkserver kills a child whose pid it could not send
            raise

    def close(self) -> None:
        """End the forkserver; ``spawn`` answers None from then on, so that a caller racing the
        close (a worker restart during a shutdown) cannot start another one. One still importing
        its modules is killed."""
        self._closed = True
        starting = self._starting
        if starting is not None:
            starting.kill()  # its report ends, and the start holding the lock gives up
        with self._lock:
            if self._parent is not None:
                assert self._parent.stdin is not None and self._parent.stdout is not None
                self._parent.stdin.close()  # its end of input: it exits
                self._parent.stdout.close()
                try:  # a fork of this process may hold the pipe open too
                    self._parent.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._parent.kill()
                    self._parent.wait()
                self._parent = None

    def __enter__(self) -> Forkserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _can_fork(self, command: list[str], env: Mapping[str, str]) -> bool:
        python_m = len(command) >= 3 and command[0] == sys.executable and command[1] == "-m"
        path = [Path(entry) for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        # A fresh interpreter would import these at start-up, from the first entry that has one.
        customized = any((entry / f"{name}.py").exists() for entry in path for name in _CUSTOMIZE)
        return python_m and not customized and _startup_variables(env) == self._startup

    def _started(self) -> tuple[str, int] | None:
        """The running forkserver's socket name and pid, starting it first if need be (again, if it
        died); None if it cannot run."""
        with self._lock:
            if self.failure is not None or self._closed:
                return None
            if self._parent is None or self._parent.poll() is not None:
                self._name = f"scorer-forkserver-{os.getpid()}-{secrets.token_hex(8)}"
                parent = subprocess.Popen(
                    [sys.executable, str(_PARENT_SCRIPT), self._name, *self.preload],
                    env=self._environment,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                self._starting = parent
                try:
                    failure = "closed while it started" if self._closed else self._read_report(parent)
                finally:
                    self._starting = None
                if failure is not None or self._closed:
                    parent.kill()
                    parent.wait()
                    assert parent.stdin is not None and parent.stdout is not None
                    parent.stdin.close()
                    parent.stdout.close()
                    self._parent = None
                    if not self._closed:
                        self.failure = failure
                        log.warning("Processes start afresh, not forked: %s", failure)
                    return None
                self._parent = parent
            return self._name, self._parent.pid

    def _read_report(self, parent: subprocess.Popen[bytes]) -> str | None:
        """Why the forkserver is not ready to fork, or None once it says it is. The modules it
        could not import are logged here, in this process's log format."""
        assert parent.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT
        for line in _lines(parent.stdout.fileno(), deadline):
            if line == "ready":
                return None
            if line.startswith("not preloaded: "):
                log.info("The forkserver did not preload %s", line.removeprefix("not preloaded: "))
            elif line.startswith("refused: "):
                return f"the forkserver refused to fork: {line.removeprefix('refused: ')}"
        if time.monotonic() >= deadline:
            return f"the forkserver did not import its modules within {_START_TIMEOUT:g} s"
        return f"the forkserver exited with code {parent.wait()} before it was ready"


def _lines(fd: int, deadline: float) -> Iterator[str]:
    """The lines written to ``fd`` until it ends or ``deadline`` (``time.monotonic()``) passes."""
    watch = select.poll()
    watch.register(fd, select.POLLIN)
    pending = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not watch.poll(left * 1000):
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")


def _rlimits() -> dict[str, tuple[int, int]]:
    """This process's resource limits: a child it started itself would inherit them."""
    names = [name for name in dir(resource) if name.startswith("RLIMIT_")]
    return {name: resource.getrlimit(getattr(resource, name)) for name in names}


def _startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables an interpreter reads when it starts: Python's own, and the locale's (UTF-8
    mode and the file system encoding follow LC_ALL, LC_CTYPE and LANG)."""
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES) and k not in HONOURED_VARIABLES}


def _read_line(connection: socket.socket) -> str:
    """One line, read a byte at a time: the exit code may follow the pid at once, and must stay
    in the socket (where ``select`` sees it) until it is asked for."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()
