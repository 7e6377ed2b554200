"""Ray's own CLI serving ``scorer_ray:build``: the command-line form and a Serve config file
with ``import_path``, each starting its own local Ray (this module runs after
test_ray_serve.py's instance has stopped), on loopback, stopped with Ctrl-C (SIGINT); and a config
file whose application cannot be built fails the wait for an answer as soon as Serve says so."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conformance.target import free_port
from tests.conftest import plugin_env

pytest.importorskip("ray.serve")

# One xdist group with test_ray_serve.py (the root conftest.py's SHARED_GROUPS): `serve run`
# listens on Serve's fixed port, 127.0.0.1:8000, and starts a local Ray cluster, which the other
# module's must not meet.
pytestmark = pytest.mark.slow

SERVE = str(Path(sys.executable).with_name("serve"))

#: How Serve's controller logs an application whose status became DEPLOY_FAILED or UNHEALTHY
#: (ray.serve's ApplicationState._update_status), as Ray forwards it to `serve run`'s output. With
#: a config file, `serve run` only submits the config and then sleeps until Ctrl-C, whatever becomes
#: of the application: this line is the one sign that it will never answer.
CONTROLLER_ERROR = re.compile(r"\(ServeController pid=\d+\)\S*\s+ERROR\b")


class ServeRun:
    """``serve run`` in a child process, its output read as it comes, so that a failure it logs
    is seen while the test still waits for an answer (not once its timeout has run out)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self, wait: float = 0) -> str:
        """What it printed, up to its end if that comes within ``wait`` seconds."""
        self._reader.join(wait)
        return "".join(self.lines)

    def controller_error(self) -> str | None:
        return next((line for line in list(self.lines) if CONTROLLER_ERROR.search(line)), None)


def run_serve(args: list[str], env: dict[str, str], cwd: Path) -> ServeRun:
    return ServeRun(
        subprocess.Popen(
            [SERVE, "run", *args],
            # A local Ray of its own, whatever the environment points at.
            env={
                **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
                **env,
                "RAY_USAGE_STATS_ENABLED": "0",
            },
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C to it alone
        )
    )


def scored_until_up(base: str, serve: ServeRun, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.process.poll() is not None:
            raise AssertionError(
                f"serve run exited {serve.process.returncode}: {serve.output(wait=10)[-4000:]}"
            )
        error = serve.controller_error()
        if error is not None:
            # The whole message (a traceback follows the line) has come by the time it has stopped;
            # its end names the cause.
            out = stop(serve)
            message = "".join(
                line for line in out[out.index(error) :].splitlines(True) if "(ServeController" in line
            )
            raise AssertionError(f"Serve's controller logged an error: {message[-4000:]}")
        try:
            reply = httpx.post(f"{base}/model/score", json={"fields": ["x"], "rows": [["1.5"]]}, timeout=5)
            if reply.status_code == 200:
                return reply.json()
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{base} did not answer within {timeout} s")


def stop(serve: ServeRun) -> str:
    process = serve.process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            raise AssertionError(
                f"serve run did not stop on Ctrl-C: {serve.output(wait=10)[-3000:]}"
            ) from None
    return serve.output(wait=30)


def serve_config(tmp_path: Path, port: int, args: dict[str, Any]) -> Path:
    """A Serve config file: one application, ``scorer_ray:build`` with ``args``, under /scoring."""
    config = tmp_path / "serve.yaml"
    app = {"name": "scorer", "route_prefix": "/scoring", "import_path": "scorer_ray:build", "args": args}
    config.write_text(
        yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": port}, "applications": [app]})
    )
    return config


@pytest.fixture
def probe(tmp_path) -> Path:
    path = tmp_path / "m.probe"
    path.write_text(json.dumps({"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}))
    return path


def test_serve_run_with_arguments(probe, tmp_path):
    """``serve run scorer_ray:build model_path=... num_replicas=2``, word for word: the command
    form has no port option, so Serve listens on its default, 127.0.0.1:8000."""
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 8000)) != 0, "something already listens on 8000"
    serve = run_serve(
        ["scorer_ray:build", f"model_path={probe}", "num_replicas=2"],
        plugin_env(RAY_SERVE_DEFAULT_HTTP_HOST="127.0.0.1"),
        tmp_path,
    )
    try:
        assert scored_until_up("http://127.0.0.1:8000", serve)["score"] == [["3.0"]]
    finally:
        stop(serve)


def test_serve_run_with_a_config_file(probe, tmp_path):
    port = free_port()
    args = {"model_path": str(probe), "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}}
    serve = run_serve([str(serve_config(tmp_path, port, args))], plugin_env(), tmp_path)
    try:
        reply = scored_until_up(f"http://127.0.0.1:{port}/scoring", serve)
        assert reply["score"] == [["3.0"]]
        prefixed = httpx.post(
            f"http://127.0.0.1:{port}/scoring/deployment-7/model/score",
            json={"fields": ["x"], "rows": [["2"]]},
            timeout=10,
        )
        assert prefixed.status_code == 200 and prefixed.json()["score"] == [["4.0"]]
    finally:
        stop(serve)


def test_a_config_file_whose_application_fails_to_build_fails_at_once(probe, tmp_path):
    """`serve run` goes on running after a config file's application failed to deploy (it
    only submitted the config): the failure, with the one line scorer_ray gives a typo, is seen
    in its output, not after the wait for an answer has run out (150 s for a test that passes
    in 20)."""
    port = free_port()
    config = serve_config(tmp_path, port, {"model_path": str(probe), "num_replica": 2})
    serve = run_serve([str(config)], plugin_env(), tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(AssertionError, match=r"unknown argument\(s\) num_replica;"):
            scored_until_up(f"http://127.0.0.1:{port}/scoring", serve, timeout=90)
    finally:
        stop(serve)
    assert time.monotonic() - started < 90
