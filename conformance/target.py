"""The server a conformance run talks to: one it starts from a model path, or one already running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conformance._http import Reply, request
from conformance.recording import HEADER_LOG_ENV
from scorer_core.execution.workers.forkserver import ChildProcess

__all__ = [
    "CONFORMANCE_FORWARD_HEADERS",
    "Launcher",
    "ScorerTarget",
    "ServerProcess",
    "free_port",
    "popen_launcher",
    "servers_launched_by",
    "start_server",
    "stop_process",
    "wait_ready",
]

#: What a suite-started server forwards: two real headers plus two tracing headers that the
#: runtime must drop even though they are configured.
CONFORMANCE_FORWARD_HEADERS = "Authorization,X-Tenant-Id,traceparent,X-Request-Id"

RECORDING_PLUGIN = "conformance.recording"


#: A started server's process: the part of ``subprocess.Popen`` that callers use, which a
#: forked one (``conformance.forkserver``) has too.
ServerProcess = ChildProcess


#: Starts ``command`` with ``env`` (complete), its stdout and stderr going to ``output``.
Launcher = Callable[[list[str], dict[str, str], IO[bytes]], ServerProcess]


def popen_launcher(command: list[str], env: dict[str, str], output: IO[bytes]) -> ServerProcess:
    """How ``start_server`` starts a server unless told otherwise: a new interpreter."""
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


_launcher: Launcher = popen_launcher


@contextmanager
def servers_launched_by(launcher: Launcher) -> Iterator[None]:
    """Within the block, ``start_server`` starts servers with ``launcher`` (for example a
    ``conformance.forkserver.Forkserver``, for a suite that starts many)."""
    global _launcher
    previous, _launcher = _launcher, launcher
    try:
        yield
    finally:
        _launcher = previous


@dataclass
class ScorerTarget:
    """A running server. ``header_log`` is set when the suite started it with header recording."""

    base_url: str
    header_log: Path | None = None
    process: ServerProcess | None = field(default=None, repr=False)
    log_file: Path | None = None

    def get(self, path: str, **kwargs: Any) -> Reply:
        return request(self.base_url, "GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return request(self.base_url, "POST", path, body, **kwargs)

    def server_log(self) -> str:
        """What the server printed so far (when the suite started it)."""
        return self.log_file.read_text(errors="replace") if self.log_file else ""

    def seen_headers(self) -> list[dict[str, Any]]:
        """Each model call so far: operation, rows and ``request_headers`` as model code saw them."""
        if self.header_log is None or not self.header_log.exists():
            return []
        return [json.loads(line) for line in self.header_log.read_text().splitlines() if line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def start_server(
    model_path: str | os.PathLike[str] | None,
    *,
    runtime: str | None = None,
    env: dict[str, str] | None = None,
    startup_timeout: float = 180.0,
    record_headers: bool = True,
) -> Iterator[ScorerTarget]:
    """Start a scorer on a free port; yield it once ``/readyz`` says Ready.

    With ``record_headers`` (the default) it is the production server with each model call's
    ``request_headers`` written to ``target.header_log``; without, it is plain ``scorer serve``.
    A ``model_path`` of ``None`` serves the demo model (or ``MODEL_PATH`` from ``env``).
    """
    # A port the caller chose for the server already (SCORER_GRPC_PORT, from free_port() too) is
    # free until the server binds it, so free_port() may hand it out again: never take it here.
    taken = {int(value) for name, value in (env or {}).items() if name.endswith("_PORT") and value.isdigit()}
    port = free_port()
    while port in taken:
        port = free_port()
    with tempfile.TemporaryDirectory(prefix="scorer-conformance-") as tmp:
        header_log = Path(tmp) / "headers.jsonl"
        log_file = Path(tmp) / "server.log"
        child_env = {**os.environ, **(env or {})}
        if record_headers:
            child_env.setdefault("H2O_SCORER_FORWARD_HEADERS", CONFORMANCE_FORWARD_HEADERS)
            child_env[HEADER_LOG_ENV] = str(header_log)
            extra = child_env.get("SCORER_EXTRA_PLUGINS", "")
            child_env["SCORER_EXTRA_PLUGINS"] = f"{extra},{RECORDING_PLUGIN}" if extra else RECORDING_PLUGIN
        command = [sys.executable, "-m", "scorer_core.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        if model_path is not None:
            command.append(str(model_path))
        if runtime:
            command += ["--runtime", runtime]
        with open(log_file, "wb") as log:
            process = _launcher(command, child_env, log)
        target = ScorerTarget(
            f"http://127.0.0.1:{port}", header_log if record_headers else None, process, log_file
        )
        try:
            _wait_ready(target, process, log_file, startup_timeout)
            yield target
        finally:
            stop_process(process)


def stop_process(process: ServerProcess, grace: float = 30) -> None:
    """Stop a server started for a check: SIGTERM, ``grace`` seconds to finish, then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(target: ScorerTarget, process: ServerProcess, log_file: Path, timeout: float) -> None:
    wait_ready(target.base_url, timeout, process=process, log=lambda: log_file.read_text(errors="replace"))


def wait_ready(
    base_url: str,
    timeout: float,
    *,
    process: ServerProcess | None = None,
    log: Callable[[], str] | None = None,
    path: str = "/readyz",
) -> None:
    """Return once ``GET /readyz`` (or ``path``, for another server) answers 200; raise
    RuntimeError, with the end of the server's ``log`` when given, if ``process`` exits first or
    ``timeout`` seconds pass.

    Every test, benchmark and integration that starts a server waits through this, so that none
    goes on against a server that never became ready.
    """
    deadline = time.monotonic() + timeout

    def tail() -> str:
        return (":\n" + log()[-4000:]) if log is not None else ""

    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            code = process.returncode
            raise RuntimeError(f"the scorer exited with code {code} before it was ready{tail()}")
        try:
            if request(base_url, "GET", path, timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the scorer at {base_url} was not ready after {timeout:.0f} s{tail()}")
