"""``scorer_ray:build`` on a real local Ray instance started here (loopback only, every wait
bounded): the H2O contract on 2 replicas (the conformance suite, over Serve's HTTP proxy),
forwarded headers kept apart under concurrent clients, the deployment prefix, and a replica
killed with SIGKILL replaced by Serve while scoring goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conformance.target import free_port, wait_ready
from scorer_core.errors import ConfigurationError
from tests.conftest import plugin_env

ray = pytest.importorskip("ray")  # the scorer-ray distribution's dependency; make install-test has it
serve = pytest.importorskip("ray.serve")
import scorer_ray  # noqa: E402

# One xdist group with test_serve_cli.py (the root conftest.py's SHARED_GROUPS): each starts a
# local Ray cluster, and two must not meet.
pytestmark = pytest.mark.slow

PROBE = {
    "inputs": [["x", "Float64"]],
    "outputs": [["y", "Float64"], ["pid", "Str"], ["auth", "Str"], ["batch_rows", "Int32"]],
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray instance and Serve's HTTP proxy on a loopback port: the base URL."""
    port = free_port()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        namespace="scorer-ray-tests",
        _node_ip_address="127.0.0.1",
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def probe_app(cluster, tmp_path_factory) -> Iterator[str]:
    """The probe model (its answers name the replica's pid and the Authorization it saw) on
    2 replicas, forwarding Authorization to the model."""
    path = tmp_path_factory.mktemp("probe") / "m.probe"
    path.write_text(json.dumps(PROBE))
    env = plugin_env(
        H2O_SCORER_FORWARD_HEADERS="Authorization",
        BATCH_WORKERS="0",
        # Each replica exports what it scored, from its own queue and export process.
        SCORER_MONITOR="file",
        SCORER_MONITOR_DIR=str(tmp_path_factory.mktemp("ray-events", numbered=False)),
        SCORER_MONITOR_FILE_MAX_SECONDS="1",
    )
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # build() checks the model here, as `serve run` does, with this env
    sys.path.insert(0, env["PYTHONPATH"].split(os.pathsep)[0])
    try:
        app = scorer_ray.build(
            {
                "model_path": str(path),
                "num_replicas": "2",
                "ray_actor_options": json.dumps({"num_cpus": 0.5, "runtime_env": {"env_vars": env}}),
                "health_check_period_s": "1",
            }
        )
        serve.run(app, name="probe", route_prefix="/", blocking=False)
        wait_ready(cluster, 120)
        yield cluster
        serve.delete("probe")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: One client for the module's requests, shared by its threads (httpx's clients are thread-safe):
#: ``httpx.post`` builds a client per call, and each builds a TLS context (about 23 ms of
#: processor time), which, for the 1,000-odd requests here, cost more than Serve answering them.
#: Serve routes each request to a replica on its own, whichever connection it came on. An idle
#: connection is dropped after 1 s, well before the proxy's keep-alive timeout, so that none is
#: reused just as the proxy closes it.
CLIENT = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32, keepalive_expiry=1))


@pytest.fixture(scope="module", autouse=True)
def _client_closed_after_the_module() -> Iterator[None]:
    yield
    CLIENT.close()


def score(base: str, x: float, auth: str | None = None, path: str = "/model/score") -> httpx.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    body = {"fields": ["x"], "rows": [[str(x)]]}
    return CLIENT.post(base + path, json=body, headers=headers)


def replica_pids(base: str, at_least: int, timeout: float = 60) -> set[str]:
    """The pids answering, from concurrent requests (Serve spreads them), until ``at_least``."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < at_least and time.monotonic() < deadline:
            replies = pool.map(lambda i: score(base, i + 0.5), range(32))
            seen |= {r.json()["score"][0][1] for r in replies if r.status_code == 200}
    return seen


def test_two_replicas_answer_under_the_deployment_prefix_too(probe_app):
    assert len(replica_pids(probe_app, 2)) == 2
    reply = score(probe_app, 2.5, path="/my-deployment/model/score")
    assert reply.status_code == 200 and reply.json()["score"][0][0] == "5.0"
    assert CLIENT.get(f"{probe_app}/my-deployment/model/schema", timeout=10).json()["schema"]["inputFields"] == [
        {"name": "x", "dataType": "Float64"}
    ]
    bad = CLIENT.post(f"{probe_app}/model/score", json={"fields": ["x"], "rows": [["abc"]]}, timeout=10)
    assert bad.status_code == 400 and "'x'" in bad.json()["detail"]


def test_each_replica_exports_what_it_scored(probe_app, tmp_path_factory):
    directory = tmp_path_factory.getbasetemp() / "ray-events"  # the probe_app's SCORER_MONITOR_DIR
    ids = [f"ray-{i}" for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda request_id: CLIENT.post(
                    probe_app + "/model/score",
                    json={"fields": ["x"], "rows": [["1.5"]]},
                    headers={"X-Request-Id": request_id},
                    timeout=30,
                ),
                ids,
            )
        )
    assert all(reply.status_code == 200 for reply in replies)
    answered_by = {reply.headers["x-request-id"]: reply.json()["score"][0][1] for reply in replies}

    def exported() -> dict[str, str]:
        """Request id to the pid in the name of the part that holds its event (the pid of the
        export process that wrote it)."""
        found = {}
        for part in directory.glob("events-*.jsonl"):  # published parts only: whole lines
            pid = part.name.split("-")[-3]
            for line in part.read_bytes().splitlines():
                found[json.loads(line)["id"]] = pid
        return found

    deadline = time.monotonic() + 60
    while not set(ids) <= set(exported()) and time.monotonic() < deadline:
        time.sleep(0.5)
    parts = exported()
    assert set(ids) <= set(parts)
    # Both replicas answered, and each had its own export process write its requests' events.
    assert len(set(answered_by.values())) == 2
    assert len({parts[request_id] for request_id in ids}) == 2


def test_forwarded_headers_stay_with_their_requests_under_concurrent_clients(probe_app):
    def call(i: int) -> tuple[int, str, httpx.Response]:
        auth = f"Bearer client-{i % 6}"
        return i, auth, score(probe_app, i + 0.5, auth)  # never 13, on which the probe raises

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(480)))
    merged = 0
    for i, auth, reply in results:
        assert reply.status_code == 200, reply.text
        y, _, seen, rows = reply.json()["score"][0]
        assert (float(y), seen) == (2.0 * i + 1, auth)
        merged += int(rows) > 1
    # Requests were batched (so the isolation above was tested, not avoided)...
    assert merged > 0
    # ...and a request without the header never sees another client's.
    assert score(probe_app, 1.0).json()["score"][0][2] == ""


def test_a_replica_killed_with_sigkill_is_replaced_while_scoring_goes_on(probe_app):
    before = replica_pids(probe_app, 2)
    assert len(before) == 2
    victim = sorted(before)[0]
    os.kill(int(victim), signal.SIGKILL)
    answered, failed, new = 0, 0, set()
    deadline = time.monotonic() + 90
    with ThreadPoolExecutor(4) as pool:
        while time.monotonic() < deadline:
            for reply in pool.map(lambda i: score(probe_app, i + 0.5), range(8)):
                if reply.status_code == 200:
                    answered += 1
                    new.add(reply.json()["score"][0][1])
                else:
                    failed += 1
            if len(new - before) >= 1 and answered >= 40:
                break
            time.sleep(0.2)
    assert victim not in new
    assert len(new - before) == 1, f"no replacement replica answered within 90 s: {new}"
    assert answered >= 40 and failed <= 8, (answered, failed)  # only requests in flight on the victim
    assert len(replica_pids(probe_app, 2)) == 2


def test_the_h2o_contract_on_two_replicas_of_a_real_mlflow_model(cluster, tmp_path, monkeypatch):
    """The conformance suite (`scorer check --url`) against an MLflow model on 2 replicas."""
    for name in plugin_env(H2O_SCORER_FORWARD_HEADERS="", BATCH_WORKERS=""):  # the installed plugins
        monkeypatch.delenv(name, raising=False)
    import mlflow
    from mlflow.models import infer_signature
    from scorer_mlflow.requirements import pinned_requirements
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    X, y = frame.drop(columns="target"), frame["target"]
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path / "iris"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        serialization_format="cloudpickle",
        # Named, not inferred: MLflow's inference starts a second Python to load the model.
        pip_requirements=pinned_requirements(["mlflow", "scikit-learn", "cloudpickle"]),
    )
    app = scorer_ray.build({"model_path": str(path), "num_replicas": "2", "name": "iris",
                            "ray_actor_options": {"num_cpus": 0.5}})  # fmt: skip
    serve.run(app, name="iris", route_prefix="/iris", blocking=False)
    try:
        wait_ready(f"{cluster}/iris", 120)
        result = subprocess.run(
            [sys.executable, "-m", "scorer_core.cli", "check", "--url", f"{cluster}/iris"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert " passed" in result.stdout and " failed" not in result.stdout
    finally:
        serve.delete("iris")


def test_arguments_pass_through_and_a_bad_one_fails_the_deploy_with_one_line(tmp_path, monkeypatch):
    for name, value in plugin_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(plugin_env()["PYTHONPATH"].split(os.pathsep)[0])
    model = tmp_path / "m.probe"
    model.write_text("{}")
    # Strings, as `serve run` passes them; a config file's mappings are taken as they are.
    scaled = scorer_ray.build(
        {"model_path": str(model), "num_replicas": "auto", "max_ongoing_requests": "8",
         "autoscaling_config": json.dumps({"min_replicas": 1, "max_replicas": 3})}
    )._bound_deployment  # fmt: skip
    assert scaled.max_ongoing_requests == 8
    assert scaled._deployment_config.autoscaling_config.max_replicas == 3
    # By default our own admission decides about overload (503 + Retry-After), not Serve's 5.
    default = scorer_ray.build({"model_path": str(model)})._bound_deployment
    # SCORING_CONCURRENCY + SCORER_QUEUE_SIZE, and more, so that overflow gets our 503.
    assert default.max_ongoing_requests == 256 + 1024 + scorer_ray.OVERFLOW_ANSWERED
    assert default._deployment_config.max_queued_requests == 1024  # Serve's own queue, bounded

    with pytest.raises(ConfigurationError, match=r"unknown argument\(s\) num_replica;.*it takes"):
        scorer_ray.build({"model_path": str(model), "num_replica": "2"})
    with pytest.raises(ConfigurationError, match="num_replicas='two'"):
        scorer_ray.build({"model_path": str(model), "num_replicas": "two"})
    with pytest.raises(ConfigurationError, match="ray_actor_options"):
        scorer_ray.build({"model_path": str(model), "ray_actor_options": "[1]"})
    with pytest.raises(ConfigurationError):  # no runtime can load it: refused before any replica starts
        scorer_ray.build({"model_path": str(tmp_path / "missing")})
    # /admin/model would replace one replica's model only: refused, pointing at Serve's redeploy.
    monkeypatch.setenv("SCORER_ADMIN_PASSPHRASE", "a-long-admin-passphrase")
    with pytest.raises(ConfigurationError, match="ADMIN_PASSPHRASE is set, but under Ray Serve"):
        scorer_ray.build({"model_path": str(model)})
    monkeypatch.delenv("SCORER_ADMIN_PASSPHRASE")
    monkeypatch.setenv("SCORER_MODEL_WATCH", "true")
    with pytest.raises(ConfigurationError, match="MODEL_WATCH is set, but under Ray Serve"):
        scorer_ray.build({"model_path": str(model)})
    monkeypatch.delenv("SCORER_MODEL_WATCH")
    # Every replica would bind the gRPC port itself: refused at deploy, and again in a replica
    # whose own environment sets it, before its model loads.
    monkeypatch.setenv("SCORER_GRPC_PORT", "50051")
    with pytest.raises(ConfigurationError, match=r"SCORER_GRPC_PORT is set \(50051\), but under Ray Serve"):
        scorer_ray.build({"model_path": str(model)})
    with pytest.raises(ConfigurationError, match="SCORER_GRPC_PORT is set"):
        scorer_ray._replica_app(str(model), None)
    assert scorer_ray._served is None
