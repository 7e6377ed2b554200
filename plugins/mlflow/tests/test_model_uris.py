"""``scorer serve models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and ``runs:/ID/PATH``, against a
real MLflow tracking server started here (``mlflow server`` on loopback, SQLite, served artifacts),
and every way the fetch can fail: one line and exit status 2, before the server listens."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance import start_server
from conformance.target import free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FIELDS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [["5.1", "3.5", "1.4", "0.2"], ["6.7", "3.0", "5.2", "2.3"], ["5.9", "3.0", "4.2", "1.5"]]

# Run in a child process, so that this one's MLflow keeps no tracking URI or active run.
REGISTER = """
import json, sys
import mlflow, mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

iris = load_iris(as_frame=True)
X = iris.data.set_axis(FIELDS, axis=1)
model = LogisticRegression(max_iter=1000).fit(X, iris.target_names[iris.target])
with mlflow.start_run() as run:
    mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(X, model.predict(X)),
        registered_model_name="iris",
        serialization_format="cloudpickle",
        pip_requirements=["scikit-learn"],
    )
mlflow.MlflowClient().set_registered_model_alias("iris", "champion", "1")
rows = pd.DataFrame([[float(c) for c in row] for row in ROWS], columns=FIELDS)
print(json.dumps({"run_id": run.info.run_id, "labels": [str(v) for v in model.predict(rows)]}))
"""


def tracking_env(url: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": url, "SCORER_LOAD_PLUGINS": "mlflow"}


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port, ready when ``/health`` answers (bounded)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # MLflow 3's server starts job consumers (huey) for features these tests never use; each
        # imports MLflow again, about 3 CPU-seconds apiece, seven of them.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process, root / "server.log", timeout=240)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server was not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def registered(tracking_server) -> SimpleNamespace:
    """Version 1 of the registered model ``iris``, aliased ``champion``, logged in a run."""
    script = f"FIELDS = {FIELDS!r}\nROWS = {ROWS!r}\n{REGISTER}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_server},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return SimpleNamespace(url=tracking_server, **json.loads(done.stdout.strip().splitlines()[-1]))


def serve(uri: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``scorer serve URI`` expected to stop before listening (a bounded wait, in case it does not)."""
    return subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", uri, "--host", "127.0.0.1", "--port", "0"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_versions_aliases_and_runs_are_fetched_served_and_removed_at_exit(registered):
    uris = ["models:/iris/1", "models:/iris@champion", f"runs:/{registered.run_id}/model"]
    for uri in uris:
        with start_server(uri, env=tracking_env(registered.url), record_headers=False) as target:
            reply = target.post("/model/score", {"fields": FIELDS, "rows": ROWS})
            assert reply.status == 200, (uri, reply)
            assert [row[0] for row in reply.json()["score"]] == registered.labels, uri
            fetched = re.search(rf"Model path '{re.escape(uri)}' fetched to '([^']+)'", target.server_log())
            assert fetched, target.server_log()[-3000:]
            local = Path(fetched.group(1))
            assert (local / "MLmodel").is_file()
        assert target.process is not None and target.process.returncode == 0
        assert not local.exists(), f"{uri}: the fetched copy {local} outlived the server"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("models:/nope/1", "RESOURCE_DOES_NOT_EXIST: Registered Model with name=nope not found"),
        ("models:/iris/9", "RESOURCE_DOES_NOT_EXIST: Model Version (name=iris, version=9) not found"),
        ("models:/iris@nope", "INVALID_PARAMETER_VALUE: Registered model alias nope not found."),
        ("runs:/0123456789abcdef0123456789abcdef/model", "RESOURCE_DOES_NOT_EXIST: Run with id=0123456789abcdef0123456789abcdef not found"),
    ],
)
def test_an_unknown_model_version_alias_or_run_is_one_line_before_listening(registered, uri, problem):
    result = serve(uri, tracking_env(registered.url))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"scorer: error: Cannot fetch '{uri}' from the MLflow tracking server {registered.url} "
        f"(MLFLOW_TRACKING_URI): {problem}"
    ]
    assert "Listening on" not in result.stdout


def test_an_unreachable_tracking_server_is_one_line_before_listening():
    closed = f"http://reader:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    result = serve("models:/iris@champion", tracking_env(closed))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"scorer: error: Cannot fetch 'models:/iris@champion' from the MLflow tracking server "
        f"{closed.replace('reader:s3cret', '***')} (MLFLOW_TRACKING_URI): cannot reach it: Connection refused"
    ]
    assert "s3cret" not in result.stdout + result.stderr


def test_a_model_uri_without_a_tracking_server_says_which_variable_to_set():
    env = {**os.environ, "SCORER_LOAD_PLUGINS": "mlflow"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", "runs:/abc/model", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "scorer: error: 'runs:/abc/model' names a model in an MLflow tracking server; set "
        "MLFLOW_TRACKING_URI to the server's address (for example http://mlflow.example:5000)"
    )
