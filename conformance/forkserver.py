"""Servers started by forking a process that has imported their libraries once.

A ``scorer serve`` of an MLflow model spends about 3 CPU-seconds importing MLflow, scikit-learn
and the web stack before it reads its model; forked from a process that has them imported, it is
ready in about a third of that. A suite that starts hundreds of servers (this project's own) can
start them so: ``with servers_launched_by(Forkserver(PRELOAD)): ...``. Each server is still its own
process, with the environment, working directory, output and command line it was given, running
``python -m`` as it would have; what differs is only that its libraries were imported before its
environment was set, so a library that reads a variable when imported sees the forkserver's.

A command that is not ``python -m MODULE ...`` of this interpreter, or an environment whose
variables that Python reads at start-up (``PYTHON...``, other than ``PYTHONPATH`` and
``PYTHONSAFEPATH``, which a child honours) differ from the forkserver's, or whose ``PYTHONPATH``
holds a ``sitecustomize`` or ``usercustomize`` module, is started with ``subprocess.Popen`` as
before. A child gets its caller's resource limits, as a child of the caller's own would.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from conformance.target import ServerProcess, popen_launcher

__all__ = ["ForkedProcess", "Forkserver"]

_PARENT_SCRIPT = Path(__file__).with_name("_forkserver_main.py")
#: Variables a child may set that a forked interpreter honours as a fresh one would.
_HONOURED = frozenset({"PYTHONPATH", "PYTHONSAFEPATH"})
#: Modules that ``site`` imports when an interpreter starts.
_CUSTOMIZE = ("sitecustomize", "usercustomize")


class ForkedProcess:
    """A forked child, as much of ``subprocess.Popen``'s interface as a server's caller uses."""

    def __init__(self, args: list[str], pid: int, connection: socket.socket) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
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
        if self.poll() is None:  # as Popen: never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def _collect(self, timeout: float | None) -> int | None:
        with self._lock:
            if self.returncode is None:
                ready, _, _ = select.select([self._connection], [], [], timeout)
                if ready:
                    line = _read_line(self._connection)
                    self._connection.close()
                    if not line:
                        raise RuntimeError(f"the forkserver ended before process {self.pid} did")
                    self.returncode = int(line)
            return self.returncode


class Forkserver:
    """A launcher for ``conformance.target.servers_launched_by``: it starts, on its first use, a
    process that imports ``preload`` and forks each server from itself. ``close`` ends that
    process; the servers are their callers' to stop."""

    def __init__(self, preload: Iterable[str]) -> None:
        self.preload = list(preload)
        #: What the forkserver's interpreter started with, and its children therefore have.
        self._startup = _startup_variables(os.environ)
        self._parent: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._socket = ""
        self._lock = threading.Lock()

    def __call__(self, command: list[str], env: dict[str, str], output: IO[bytes]) -> ServerProcess:
        if not self._can_fork(command, env):
            return popen_launcher(command, env, output)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self._started())
            request = json.dumps({"argv": command[1:], "env": env, "cwd": os.getcwd(), "rlimits": _rlimits()})
            socket.send_fds(connection, [request.encode() + b"\n"], [output.fileno()])
            pid = int(_read_line(connection) or "0")
            if not pid:
                raise RuntimeError("the forkserver refused to start a process; its output says why")
        except BaseException:
            connection.close()
            raise
        return ForkedProcess(command, pid, connection)

    def close(self) -> None:
        with self._lock:
            if self._parent is not None:
                assert self._parent.stdin is not None
                self._parent.stdin.close()  # its end of input: it exits
                self._parent.wait()
                self._parent = None
            if self._directory is not None:
                self._directory.cleanup()
                self._directory = None

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

    def _started(self) -> str:
        with self._lock:
            if self._parent is None or self._parent.poll() is not None:
                self._directory = tempfile.TemporaryDirectory(prefix="scorer-forkserver-")
                self._socket = os.path.join(self._directory.name, "fork.sock")
                env = {k: v for k, v in os.environ.items() if k not in _HONOURED}
                env.update(self._startup)
                command = [sys.executable, str(_PARENT_SCRIPT), self._socket, *self.preload]
                self._parent = subprocess.Popen(
                    command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                assert self._parent.stdout is not None
                if self._parent.stdout.readline() != b"ready\n":
                    self._parent.wait()
                    raise RuntimeError(f"the forkserver exited with code {self._parent.returncode}")
            return self._socket


def _rlimits() -> dict[str, tuple[int, int]]:
    """This process's resource limits: a child it started itself would inherit them."""
    names = [name for name in dir(resource) if name.startswith("RLIMIT_")]
    return {name: resource.getrlimit(getattr(resource, name)) for name in names}


def _startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON") and k not in _HONOURED}


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
