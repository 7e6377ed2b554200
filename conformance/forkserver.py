"""Servers started by forking a process that has imported their libraries once.

A ``scorer serve`` of an MLflow model spends about 3 CPU-seconds importing MLflow, scikit-learn
and the web stack before it reads its model; forked from a process that has them imported, it is
ready in about a third of that. A suite that starts hundreds of servers (this project's own) can
start them so: ``with servers_launched_by(Forkserver(PRELOAD)): ...``. Each server is still its own
process, with the environment, working directory, resource limits, output and arguments it was
given, running ``python -m`` as it would have. What differs: its libraries were imported before
its environment was set (a library that reads a variable when imported sees the forkserver's), its
RSS includes them, and ``ps`` shows the forkserver's command line. A test that bounds RSS relative
to a server's own should start it afresh (``servers_launched_by(popen_launcher)``).

A command that is not ``python -m MODULE ...`` of this interpreter, or an environment whose
variables that Python reads at start-up (``PYTHON...`` other than ``PYTHONPATH`` and
``PYTHONSAFEPATH``, which a child honours; the locale's ``LC_ALL``, ``LC_CTYPE`` and ``LANG``)
differ from the forkserver's, or whose ``PYTHONPATH``
holds a ``sitecustomize`` or ``usercustomize`` module, is started with ``subprocess.Popen`` as
before. A child gets its caller's resource limits, as a child of the caller's own would. Linux
only (pidfds, abstract sockets).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from conformance.target import ServerProcess, popen_launcher

__all__ = ["ForkedProcess", "Forkserver"]

_PARENT_SCRIPT = Path(__file__).with_name("_forkserver_main.py")
#: Variables a child may set that a forked interpreter honours as a fresh one would.
_HONOURED = frozenset({"PYTHONPATH", "PYTHONSAFEPATH"})
#: Variables an interpreter reads when it starts, besides those it honours.
_STARTUP_PREFIXES = ("PYTHON", "LC_ALL", "LC_CTYPE", "LANG")
#: Modules that ``site`` imports when an interpreter starts.
_CUSTOMIZE = ("sitecustomize", "usercustomize")


class ForkedProcess:
    """A forked child, as much of ``subprocess.Popen``'s interface as a server's caller uses.

    It is watched through a pidfd, which the kernel makes readable when the child exits and which
    signals this very process, never a later one that reused its pid; the exit code itself comes
    from the forkserver, the child's parent. Any thread may poll, wait or signal at any time.
    """

    def __init__(self, args: list[str], pid: int, pidfd: int, connection: socket.socket) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._connection = connection
        self._lock = threading.Lock()

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
        watch = select.poll()  # not select.select: a session may hold more than 1,024 files
        with self._lock:
            if self._pidfd < 0:
                return self.returncode
            watch.register(self._pidfd, select.POLLIN)
        if not watch.poll(None if timeout is None else timeout * 1000):
            return None
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
            return self.returncode


class Forkserver:
    """A launcher for ``conformance.target.servers_launched_by``: it starts, on its first use, a
    process that imports ``preload`` and forks each server from itself. ``close`` ends that
    process; the servers are their callers' to stop.

    The forkserver starts with the environment this object was made in, so that variables its
    libraries read when imported are the session's, not those of whichever test first starts a
    server. Should it fail to start, every server is started afresh instead.
    """

    def __init__(self, preload: Iterable[str]) -> None:
        self.preload = list(preload)
        self._environment = {k: v for k, v in os.environ.items() if k not in _HONOURED}
        #: What the forkserver's interpreter started with, and its children therefore have.
        self._startup = _startup_variables(self._environment)
        self._parent: subprocess.Popen[bytes] | None = None
        self._failed = False
        # An abstract socket (the parent prepends the NUL that makes it one): no path, so no TMPDIR
        # too deep for one, and nothing left behind.
        self._name = f"scorer-forkserver-{os.getpid()}-{secrets.token_hex(8)}"
        self._lock = threading.Lock()

    def __call__(self, command: list[str], env: dict[str, str], output: IO[bytes]) -> ServerProcess:
        if not self._can_fork(command, env) or not self._started():
            return popen_launcher(command, env, output)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect("\0" + self._name)
            request = json.dumps({"argv": command[1:], "env": env, "cwd": os.getcwd(), "rlimits": _rlimits()})
            socket.send_fds(connection, [request.encode() + b"\n"], [output.fileno()])
            # The pidfd comes from the forkserver, opened before it could reap the child: one
            # opened here from the pid could find it gone, or another process under its pid.
            first, pidfds, _, _ = socket.recv_fds(connection, 1, 1)
            line = (first.decode() + _read_line(connection)).strip()
            if not line or len(pidfds) != 1:
                for fd in pidfds:
                    os.close(fd)
                raise RuntimeError("the forkserver refused to start a process; its output says why")
            return ForkedProcess(command, int(line), pidfds[0], connection)
        except BaseException:
            connection.close()  # the forkserver kills a child whose pid it could not send
            raise

    def close(self) -> None:
        with self._lock:
            if self._parent is not None:
                assert self._parent.stdin is not None and self._parent.stdout is not None
                self._parent.stdin.close()  # its end of input: it exits
                self._parent.stdout.close()
                try:  # a fork of this session may hold the pipe open too
                    self._parent.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._parent.kill()
                    self._parent.wait()
                self._parent = None

    def __enter__(self) -> Forkserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _can_fork(self, command: list[str], env: dict[str, str]) -> bool:
        python_m = len(command) >= 3 and command[0] == sys.executable and command[1] == "-m"
        path = [Path(entry) for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        # A fresh interpreter would import these at start-up, from the first entry that has one.
        customized = any((entry / f"{name}.py").exists() for entry in path for name in _CUSTOMIZE)
        return python_m and not customized and _startup_variables(env) == self._startup

    def _started(self) -> bool:
        """Whether the forkserver runs, starting it first if need be."""
        with self._lock:
            if self._failed:
                return False
            if self._parent is None or self._parent.poll() is not None:
                command = [sys.executable, str(_PARENT_SCRIPT), self._name, *self.preload]
                self._parent = subprocess.Popen(
                    command, env=self._environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                assert self._parent.stdout is not None
                if self._parent.stdout.readline() != b"ready\n":
                    self._parent.wait()
                    warnings.warn(
                        f"the forkserver exited with code {self._parent.returncode} before it was "
                        "ready (its stderr says why); servers start afresh instead",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self._parent = None
                    self._failed = True
                    return False
            return True


def _rlimits() -> dict[str, tuple[int, int]]:
    """This process's resource limits: a child it started itself would inherit them."""
    names = [name for name in dir(resource) if name.startswith("RLIMIT_")]
    return {name: resource.getrlimit(getattr(resource, name)) for name in names}


def _startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables an interpreter reads when it starts: Python's own, and the locale's (UTF-8
    mode and the file system encoding follow LC_ALL, LC_CTYPE and LANG)."""
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES) and k not in _HONOURED}


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
