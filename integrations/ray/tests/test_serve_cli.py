"""Ray's own CLI serving ``scorer_ray:build``: the command-line form and a Serve config file
with ``import_path``, each starting its own local Ray (this module runs after
test_ray_serve.py's instance has stopped), on loopback, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conformance.target import free_port
from tests.conftest import plugin_env

pytest.importorskip("ray.serve")

# One xdist group with test_ray_serve.py (the root conftest.py's SHARED_GROUPS): `serve run`
# listens on Serve's fixed port, 127.0.0.1:8000, and starts a local Ray cluster, which the other
# module's must not meet.
pytestmark = pytest.mark.slow

SERVE = str(Path(sys.executable).with_name("serve"))


def run_serve(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SERVE, "run", *args],
        # A local Ray of its own, whatever the environment points at.
        env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env, "RAY_USAGE_STATS_ENABLED": "0"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C to it alone
    )


def scored_until_up(base: str, process: subprocess.Popen[str], timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve run exited {process.returncode}: {process.stdout.read()[-4000:]}")
        try:
            reply = httpx.post(f"{base}/model/score", json={"fields": ["x"], "rows": [["1.5"]]}, timeout=5)
            if reply.status_code == 200:
                return reply.json()
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{base} did not answer within {timeout} s")


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is not None:
        return process.communicate()[0]
    os.killpg(process.pid, signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate(timeout=30)
        raise AssertionError(f"serve run did not stop on Ctrl-C: {out[-3000:]}") from None
    return out


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
    process = run_serve(
        ["scorer_ray:build", f"model_path={probe}", "num_replicas=2"],
        plugin_env(RAY_SERVE_DEFAULT_HTTP_HOST="127.0.0.1"),
        tmp_path,
    )
    try:
        assert scored_until_up("http://127.0.0.1:8000", process)["score"] == [["3.0"]]
    finally:
        stop(process)


def test_serve_run_with_a_config_file(probe, tmp_path):
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"""
http_options:
  host: 127.0.0.1
  port: {port}
applications:
  - name: scorer
    route_prefix: /scoring
    import_path: scorer_ray:build
    args:
      model_path: {probe}
      num_replicas: 2
      ray_actor_options:
        num_cpus: 0.5
"""
    )
    process = run_serve([str(config)], plugin_env(), tmp_path)
    try:
        reply = scored_until_up(f"http://127.0.0.1:{port}/scoring", process)
        assert reply["score"] == [["3.0"]]
        prefixed = httpx.post(
            f"http://127.0.0.1:{port}/scoring/deployment-7/model/score",
            json={"fields": ["x"], "rows": [["2"]]},
            timeout=10,
        )
        assert prefixed.status_code == 200 and prefixed.json()["score"] == [["4.0"]]
    finally:
        stop(process)
