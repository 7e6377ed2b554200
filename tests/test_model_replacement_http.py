"""Replacing the served model while it serves (``/admin/model``, SIGHUP), over real HTTP.

Two probe models answer ``y = factor * x`` with their own ids, so each answer tells which model
scored it. Every wait is bounded; traffic goes to loopback only.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conformance import ScorerTarget, start_server
from conformance.target import popen_launcher, servers_launched_by
from tests.conftest import plugin_env, wait_for

pytestmark = pytest.mark.slow

ADMIN = "a-long-admin-passphrase"
AS_ADMIN = {"X-Admin-Passphrase": ADMIN}
FACTORS = {"model-two": 2.0, "model-three": 3.0}


def write(path: Path, **spec: Any) -> Path:
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    return {
        model_id: write(tmp_path / f"{model_id}.probe", model_id=model_id, factor=factor)
        for model_id, factor in FACTORS.items()
    }


@contextmanager
def serving(model: Path, **env: str) -> Iterator[ScorerTarget]:
    with start_server(
        model, env=plugin_env(SCORER_ADMIN_PASSPHRASE=ADMIN, **env), record_headers=False
    ) as target:
        yield target


def replace(target: ScorerTarget, body: Any, **kwargs: Any) -> Any:
    return target.post("/admin/model", body, headers=AS_ADMIN, timeout=120, **kwargs)


def score(target: ScorerTarget, x: float = 1.5) -> tuple[str, float]:
    reply = target.post("/model/score", {"fields": ["x"], "rows": [[str(x)]]})
    assert reply.status == 200, reply
    return reply.json()["id"], float(reply.json()["score"][0][0])


class Load:
    """``clients`` threads scoring one random row at a time, each on its own kept connection,
    checking that every answer's predictions are those of the model its id names."""

    def __init__(self, target: ScorerTarget, clients: int) -> None:
        self._port = int(target.base_url.rsplit(":", 1)[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.failures: list[str] = []
        self.answers: dict[str, int] = {}
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            x = round(rng.uniform(-100, 100), 3)
            body = json.dumps({"fields": ["x"], "rows": [[str(x)]]})
            try:
                connection.request("POST", "/model/score", body=body, headers=headers)
                response = connection.getresponse()
                text = response.read().decode()
            except (OSError, http.client.HTTPException) as exc:
                self._fail(f"x={x}: {type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
                continue
            if response.status != 200:
                self._fail(f"x={x}: HTTP {response.status}: {text[:300]}")
                continue
            answer = json.loads(text)
            model_id, y = answer["id"], float(answer["score"][0][0])
            if model_id not in FACTORS or abs(y - FACTORS[model_id] * x) > 1e-6 * max(1.0, abs(y)):
                self._fail(f"x={x}: model {model_id!r} answered {y}")
            with self._lock:
                self.answers[model_id] = self.answers.get(model_id, 0) + 1
        connection.close()

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.answers.values())

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads), "a client is stuck"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_ten_swaps_under_load_from_32_clients_drop_no_request(models: dict[str, Path], workers: str) -> None:
    with serving(models["model-two"], BATCH_WORKERS=workers) as target:
        with Load(target, clients=32) as load:
            wait_for(lambda: load.total >= 200, what="traffic before the first swap")
            for swap in range(10):
                model_id = "model-three" if swap % 2 == 0 else "model-two"
                before = load.total
                reply = replace(target, {"path": str(models[model_id])})
                assert reply.status == 200, reply
                report = reply.json()
                assert report["current"]["id"] == model_id
                assert report["drained"] is True
                assert target.get("/model/id").text == model_id
                # Traffic flows between swaps, so that each swap happens under load.
                wait_for(lambda before=before: load.total >= before + 100, what="traffic after a swap")
        assert not load.failures, load.failures[:10]
        assert set(load.answers) == set(FACTORS), load.answers
        described = target.get("/admin/model", headers=AS_ADMIN).json()
        assert described["replacements"]["succeeded"] == 10
        assert described["current"]["id"] == "model-two"
        assert [p["id"] for p in described["previous"]] == ["model-three"]


def test_a_swap_with_workers_forks_the_new_ones_from_the_forkserver_already_running(
    models: dict[str, Path],
) -> None:
    """The new model's workers need what the old one's imported: they are forked at once, from
    the forkserver that outlives the old pool, and no import is paid again."""
    from tests.conftest import children, is_forkserver, workers_of

    with serving(models["model-two"], BATCH_WORKERS="2") as target:
        assert target.process is not None
        (forkserver,) = children(target.process.pid)
        old = workers_of(target.process.pid)
        reply = replace(target, {"path": str(models["model-three"])})
        assert reply.status == 200, reply
        assert score(target)[0] == "model-three"
        assert children(target.process.pid) == [forkserver] and is_forkserver(forkserver)
        new = workers_of(target.process.pid)
        assert len(new) == 2 and not set(new) & set(old)


def test_a_request_in_flight_finishes_on_the_model_it_began_on(tmp_path: Path) -> None:
    slow = write(tmp_path / "slow.probe", model_id="model-two", factor=2.0, score_delay=1.5)
    fast = write(tmp_path / "fast.probe", model_id="model-three", factor=3.0)
    with serving(slow, SCORER_MODEL_LOAD_TIMEOUT="30") as target:
        in_flight: list[tuple[str, float]] = []
        thread = threading.Thread(target=lambda: in_flight.append(score(target, 4.0)))
        thread.start()
        wait_for(
            lambda: "scorer_in_flight_requests 1.0" in target.get("/metrics").text,
            what="the slow request to be in flight",
        )
        started = time.monotonic()
        reply = replace(target, {"path": str(fast)})
        thread.join(timeout=30)
        assert reply.status == 200, reply
        assert in_flight == [("model-two", 8.0)]
        # The answer came once the old model's last request had finished: the drain waited.
        assert reply.json()["drained"] is True
        assert time.monotonic() - started >= 0.5
        assert score(target, 4.0) == ("model-three", 12.0)


def broken_models(tmp_path: Path) -> list[tuple[str, dict[str, Any], int, str]]:
    """(what, body, status, what the answer says) for each way a new model can be wrong."""
    raising = write(tmp_path / "raising.probe", model_id="bad", load_error="the weights are corrupt")
    unconfigured = write(tmp_path / "unconfigured.probe", configuration_error="no such column map")
    renamed = write(tmp_path / "renamed.probe", model_id="renamed", inputs=[["z", "Float64"]])
    retyped = write(tmp_path / "retyped.probe", model_id="retyped", inputs=[["x", "Int32"]])
    exploding = write(tmp_path / "exploding.probe", model_id="exploding", behaviour="raise")
    garbage = tmp_path / "garbage.probe"
    garbage.write_text("{not json")
    return [
        ("a load that raises", {"path": str(raising)}, 422, "the weights are corrupt"),
        ("a configuration error", {"path": str(unconfigured)}, 422, "no such column map"),
        ("an unreadable model file", {"path": str(garbage)}, 422, "failed to load"),
        ("renamed inputs", {"path": str(renamed)}, 409, "added z; removed x"),
        ("retyped inputs", {"path": str(retyped)}, 409, "retyped x Float64 -> Int32"),
        ("a model that cannot score", {"path": str(exploding)}, 422, "failed to score its sample row"),
        ("no model there", {"path": str(tmp_path / "absent")}, 422, "no such file or directory"),
        ("an unknown runtime", {"path": str(raising), "runtime": "nope"}, 422, "nope"),
    ]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_broken_new_model_leaves_the_old_one_serving(
    models: dict[str, Path], tmp_path: Path, workers: str
) -> None:
    env = {"BATCH_WORKERS": workers, "SCORER_MODEL_LOAD_TIMEOUT": "8"}
    with serving(models["model-two"], **env) as target:
        for what, body, status, says in broken_models(tmp_path):
            reply = replace(target, body)
            assert reply.status == status, f"{what}: {reply}"
            assert says in reply.json()["detail"], f"{what}: {reply}"
            assert score(target) == ("model-two", 3.0), what
            described = target.get("/admin/model", headers=AS_ADMIN).json()
            assert described["current"]["id"] == "model-two"
            assert described["last_failure"]["reason"] == reply.json()["detail"]
            assert target.get("/readyz").status == 200
        # A load that hangs past SCORER_MODEL_LOAD_TIMEOUT.
        hanging = write(tmp_path / "hanging.probe", model_id="slow", load_delay=600)
        reply = replace(target, {"path": str(hanging)})
        assert reply.status == 504 and "SCORER_MODEL_LOAD_TIMEOUT" in reply.json()["detail"], reply
        assert score(target) == ("model-two", 3.0)
        good = {"path": str(models["model-three"])}
        if workers == "0":
            # Its thread cannot be stopped: no other load may pile up beside it.
            refused = replace(target, good)
            assert refused.status == 409 and "timed out still run" in refused.json()["detail"], refused
            assert target.get("/admin/model", headers=AS_ADMIN).json()["abandoned_loads_running"] == 1
            counts = {"succeeded": 0, "failed": 6, "refused": 3, "timed_out": 1}
        else:
            # Its worker processes were stopped: the server is as good as new.
            assert replace(target, good).status == 200
            assert score(target) == ("model-three", 4.5)
            counts = {"succeeded": 1, "failed": 6, "refused": 2, "timed_out": 1}
        assert target.get("/admin/model", headers=AS_ADMIN).json()["replacements"] == counts
        metrics = target.get("/metrics").text
        assert 'scorer_model_replacements_total{outcome="failed"} 6.0' in metrics


def test_a_schema_change_goes_through_when_it_is_intended(models: dict[str, Path], tmp_path: Path) -> None:
    renamed = write(tmp_path / "renamed.probe", model_id="renamed", inputs=[["z", "Float64"]], factor=5.0)
    with serving(models["model-two"]) as target:
        reply = replace(target, {"path": str(renamed), "schema_change": True})
        assert reply.status == 200, reply
        assert reply.json()["input_fields_changed"] == ["added z", "removed x"]
        assert target.get("/model/schema").json()["schema"]["inputFields"] == [
            {"name": "z", "dataType": "Float64"}
        ]
        assert target.post("/model/score", {"fields": ["x"], "rows": [["1"]]}).status == 400


def test_rollback_returns_to_the_model_replaced_and_refuses_changed_files(models: dict[str, Path]) -> None:
    with serving(models["model-two"]) as target:
        nothing = target.post("/admin/model/rollback", headers=AS_ADMIN)
        assert nothing.status == 409 and "no replaced model" in nothing.json()["detail"]
        assert replace(target, str(models["model-three"])).status == 200  # a bare JSON string: the path
        assert score(target) == ("model-three", 4.5)
        back = target.post("/admin/model/rollback", headers=AS_ADMIN)
        assert back.status == 200, back
        assert back.json()["trigger"] == "rollback"
        assert score(target) == ("model-two", 3.0)
        # The model-three kept for rollback has had its files replaced by another model since.
        write(models["model-three"], model_id="model-four", factor=4.0)
        changed = target.post("/admin/model/rollback", headers=AS_ADMIN)
        assert changed.status == 409, changed
        assert "changed since model 'model-three' was loaded from them" in changed.json()["detail"]
        assert score(target) == ("model-two", 3.0)


def test_sighup_loads_the_model_path_again(tmp_path: Path) -> None:
    path = write(tmp_path / "served.probe", model_id="model-two", factor=2.0)
    with start_server(path, env=plugin_env(), record_headers=False) as target:  # no admin API needed
        assert target.get("/admin/model").status == 404
        write(path, model_id="model-three", factor=3.0)  # a new version, as a deploy copies it
        assert target.process is not None
        target.process.send_signal(signal.SIGHUP)
        wait_for(lambda: target.get("/model/id").text == "model-three", what="the reload")
        assert score(target) == ("model-three", 4.5)
        assert target.process.poll() is None
        # A broken version is logged and leaves the served one.
        path.write_text("{not json")
        target.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "failed to load" in target.server_log(), what="the failed reload's log line")
        assert score(target) == ("model-three", 4.5)


def test_the_admin_api_needs_both_credentials(models: dict[str, Path]) -> None:
    with serving(models["model-two"], SCORER_PASSPHRASE="deployment-secret") as target:
        bearer = {"Authorization": "Bearer deployment-secret"}
        assert target.get("/admin/model", headers=AS_ADMIN).status == 401  # the deployment's first
        started = time.monotonic()
        wrong = target.get("/admin/model", headers={**bearer, "X-Admin-Passphrase": "guess"})
        assert wrong.status == 403 and "wrong" in wrong.json()["detail"]
        assert time.monotonic() - started >= 0.9  # guesses are slow
        missing = target.post("/admin/model", {"path": str(models["model-three"])}, headers=bearer)
        assert missing.status == 403 and "missing" in missing.json()["detail"]
        assert target.get("/model/id", headers=bearer).text == "model-two"
        ok = target.get("/admin/model", headers={**bearer, **AS_ADMIN})
        assert ok.status == 200 and ok.json()["current"]["id"] == "model-two"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON list"),
        ('{"path": "relative/dir"}', "must be absolute"),
        ('{"path": "/m", "extra": 1}', "unknown keys ['extra']"),
        ('{"path": "/m", "schema_change": "yes"}', "'schema_change' must be true or false"),
        ('{"path": 7}', "'path' must be a non-empty string"),
    ],
)
def test_a_malformed_admin_request_is_a_400_naming_the_problem(
    models: dict[str, Path], body: str, says: str, admin_server: ScorerTarget
) -> None:
    reply = admin_server.post("/admin/model", raw=body.encode(), headers=AS_ADMIN)
    assert reply.status == 400, reply
    assert says in reply.json()["detail"]


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScorerTarget]:
    path = write(tmp_path_factory.mktemp("admin") / "m.probe", model_id="model-two")
    with serving(path) as target:
        yield target


def test_a_short_admin_passphrase_stops_start_up(models: dict[str, Path]) -> None:
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", "--port", "0", str(models["model-two"])],
        env={**os.environ, **plugin_env(SCORER_ADMIN_PASSPHRASE="short")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "SCORER_ADMIN_PASSPHRASE must be at least 16 characters" in completed.stderr


def test_one_replacement_at_a_time(models: dict[str, Path], tmp_path: Path) -> None:
    slow = write(tmp_path / "slow.probe", model_id="model-three", factor=3.0, load_delay=2)
    with serving(models["model-two"]) as target:
        first: list[Any] = []
        thread = threading.Thread(target=lambda: first.append(replace(target, {"path": str(slow)})))
        thread.start()
        wait_for(
            lambda: target.get("/admin/model", headers=AS_ADMIN).json()["replacing"] is not None,
            what="the first replacement to start",
        )
        second = replace(target, {"path": str(models["model-two"])})
        assert second.status == 409, second
        assert f"another replacement of '{slow}'" in second.json()["detail"]
        assert score(target) == ("model-two", 3.0)  # still serving while the other one loads
        thread.join(timeout=60)
        assert first[0].status == 200, first[0]
        assert score(target) == ("model-three", 4.5)


def process_use(pid: int) -> tuple[int, int, int]:
    """The process's resident memory (KiB), threads and open file descriptors."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(status["VmRSS"].split()[0]), int(status["Threads"]), len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("workers", ["0", "1"])
def test_fifty_replacements_do_not_grow_the_server(tmp_path: Path, workers: str) -> None:
    """Each model holds 40 MB: one replaced model that was not freed would show in RSS."""
    ids = ["model-three", "model-two"]
    paths = [write(tmp_path / f"{i}.probe", model_id=i, factor=1.0, ballast_mb=40) for i in ids]
    # A fresh interpreter, not a forked one: the bound is relative to RSS, which preloaded
    # libraries would raise (conformance.forkserver).
    with servers_launched_by(popen_launcher), serving(paths[1], BATCH_WORKERS=workers) as target:
        assert target.process is not None
        assert replace(target, {"path": str(paths[0])}).status == 200
        score(target)
        rss, threads, files = process_use(target.process.pid)
        for swap in range(1, 50 if workers == "0" else 10):
            reply = replace(target, {"path": str(paths[swap % 2])})
            assert reply.status == 200, reply
            assert score(target)[0] == ids[swap % 2]
        after = process_use(target.process.pid)
        assert after[0] <= rss * 1.10, (rss, after[0])
        assert after[1] <= threads + 2, (threads, after[1])
        assert after[2] <= files + 4, (files, after[2])


def test_models_kept_for_rollback_and_ids_given(models: dict[str, Path], tmp_path: Path) -> None:
    four = write(tmp_path / "four.probe", model_id="model-four", factor=4.0)
    with serving(models["model-two"], SCORER_MODEL_KEEP_PREVIOUS="2") as target:

        def kept() -> list[str]:
            return [p["id"] for p in target.get("/admin/model", headers=AS_ADMIN).json()["previous"]]

        assert replace(target, {"path": str(models["model-three"])}).status == 200
        assert replace(target, {"path": str(four)}).status == 200
        assert kept() == ["model-three", "model-two"]  # the one replaced last first
        assert target.post("/admin/model/rollback", headers=AS_ADMIN).status == 200
        assert score(target) == ("model-three", 4.5)
        assert kept() == ["model-four", "model-two"]  # model-three serves: no longer kept
        # An id of the request's names the model everywhere a client sees one.
        reply = replace(target, {"path": str(four), "id": "credit-2026-12"})
        assert reply.status == 200, reply
        assert target.get("/model/id").text == "credit-2026-12"
        assert 'scorer_model_info{model_id="credit-2026-12",runtime="probe-scorer"} 1.0' in (
            target.get("/metrics").text
        )
        assert score(target) == ("credit-2026-12", 6.0)
        # The Open Inference Protocol addresses the model by the same name, at its new version.
        metadata = target.get(f"/v2/models/{models['model-two'].stem}").json()
        assert metadata["name"] == models["model-two"].stem
        assert metadata["versions"] == ["credit-2026-12"]


def test_monitoring_exports_each_request_with_the_model_that_scored_it(
    models: dict[str, Path], tmp_path: Path
) -> None:
    from tests.test_monitor_http import events_in, stopped

    directory = tmp_path / "events"
    env = {"SCORER_MONITOR": "file", "SCORER_MONITOR_DIR": str(directory)}
    answered: dict[str, str] = {}
    with serving(models["model-two"], **env) as target:
        for swap, model_id in enumerate(["model-three", "model-two", "model-three"]):
            for i in range(5):
                reply = target.post("/model/score", {"fields": ["x"], "rows": [[str(i)]]})
                answered[reply.headers["x-request-id"]] = reply.json()["id"]
            assert replace(target, {"path": str(models[model_id])}).status == 200, swap
        stopped(target)
    events = {event["id"]: event["model"]["id"] for event in events_in(directory)}
    assert events == answered
    assert set(answered.values()) == {"model-two", "model-three"}


def replacements(target: ScorerTarget) -> dict[str, float]:
    """``scorer_model_replacements_total`` by outcome, from the open /metrics."""
    found = {}
    for line in target.get("/metrics").text.splitlines():
        if line.startswith("scorer_model_replacements_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            found[outcome] = float(line.rsplit(" ", 1)[1])
    return found


def test_the_watch_loads_a_new_version_once_its_copy_is_complete(tmp_path: Path) -> None:
    path = write(tmp_path / "served.probe", model_id="model-two", factor=2.0)
    env = {"SCORER_MODEL_WATCH": "true", "SCORER_MODEL_WATCH_SECONDS": "0.5"}
    with start_server(path, env=plugin_env(**env), record_headers=False) as target:
        wait_for(lambda: "Watching" in target.server_log(), what="the watch to start")
        # A copy in progress: the file changes at every look for 2 s, never whole until the end.
        complete = json.dumps({"model_id": "model-three", "factor": 3.0})
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with path.open("a") as copying:
                copying.write(" ")
            time.sleep(0.05)
        assert replacements(target) == {"succeeded": 0, "failed": 0, "refused": 0, "timed_out": 0}
        assert target.get("/model/id").text == "model-two"
        path.write_text(complete)
        wait_for(lambda: target.get("/model/id").text == "model-three", what="the new version")
        assert score(target) == ("model-three", 4.5)
        assert replacements(target)["succeeded"] == 1
        # A broken version fails once and is not retried; the next good one is loaded.
        path.write_text("{not json")
        wait_for(lambda: replacements(target)["failed"] == 1, what="the broken version's failure")
        time.sleep(1)
        assert replacements(target)["failed"] == 1
        assert score(target) == ("model-three", 4.5)
        write(path, model_id="model-four", factor=4.0)
        wait_for(lambda: target.get("/model/id").text == "model-four", what="the version after a failure")


def test_a_model_directory_with_a_marker_is_loaded_when_the_marker_changes(tmp_path: Path) -> None:
    from scorer_core.service.versions import MARKER, version_of

    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "weights.bin").write_bytes(b"v1")
    (directory / MARKER).write_text("1")
    first = version_of(directory)
    (directory / "weights.bin").write_bytes(b"v2, being copied")
    assert version_of(directory) == first  # the marker alone says when a version is complete
    (directory / MARKER).write_text("2")
    assert version_of(directory) != first
    (directory / MARKER).unlink()
    unmarked = version_of(directory)
    (directory / "more.bin").write_bytes(b"x")
    assert version_of(directory) != unmarked  # without a marker, any file's change counts
    assert version_of(tmp_path / "absent") == ()


def test_a_rollback_after_a_new_version_was_copied_over_the_path_is_refused(tmp_path: Path) -> None:
    """With SCORER_MODEL_ID every version has the same id: only the files tell them apart."""
    path = write(tmp_path / "served.probe", model_id="ignored", factor=2.0)
    with serving(path, MODEL_ID="credit") as target:
        write(path, model_id="ignored", factor=3.0)
        assert target.process is not None
        target.process.send_signal(signal.SIGHUP)
        wait_for(lambda: score(target) == ("credit", 4.5), what="the new version")
        refused = target.post("/admin/model/rollback", headers=AS_ADMIN)
        assert refused.status == 409, refused
        assert "files at" in refused.json()["detail"]
        assert score(target) == ("credit", 4.5)


def test_a_request_naming_a_version_is_never_scored_by_another(
    models: dict[str, Path], tmp_path: Path
) -> None:
    slow = write(tmp_path / "slow.probe", model_id="model-two", factor=2.0, score_delay=1.0)
    with serving(slow, SCORING_CONCURRENCY="1", MODEL_NAME="m") as target:
        holding = threading.Thread(target=score, args=(target,))
        holding.start()  # takes the only slot for a second
        pinned: list[Any] = []
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.5]}]}
        asking = threading.Thread(
            target=lambda: pinned.append(target.post("/v2/models/m/versions/model-two/infer", body))
        )
        asking.start()  # waits for the slot, its version read
        wait_for(
            lambda: "scorer_in_flight_requests 2.0" in target.get("/metrics").text,
            what="the pinned request to wait behind the slow one",
        )
        assert replace(target, {"path": str(models["model-three"])}).status == 200
        holding.join(timeout=30)
        asking.join(timeout=30)
        reply = pinned[0]
        # Scored by model-two, or refused because model-two no longer serves: never model-three.
        if reply.status == 200:
            assert reply.json()["model_version"] == "model-two", reply
        else:
            assert reply.status == 404 and "has no version 'model-two'" in reply.json()["error"], reply


def test_the_admin_api_under_a_deployment_prefix_and_a_passphrase_beyond_ascii(
    models: dict[str, Path],
) -> None:
    passphrase = "pässwörd-für-den-admin"
    with start_server(
        models["model-two"], env=plugin_env(SCORER_ADMIN_PASSPHRASE=passphrase), record_headers=False
    ) as target:
        sent = {"X-Admin-Passphrase": passphrase.encode().decode("latin-1")}  # its UTF-8 bytes
        reply = target.get("/dep-7/admin/model", headers=sent)
        assert reply.status == 200, reply
        assert reply.json()["current"]["id"] == "model-two"
        assert "/admin/model" not in target.get("/openapi.json").text


def test_input_changes_name_each_change_a_client_would_notice() -> None:
    import dataclasses

    from scorer_core.schema import DataType, Field, ModelSchema
    from scorer_core.service.replacement import input_changes
    from tests.monitor_records import FACTS

    def facts_with(*inputs: Field) -> Any:
        return dataclasses.replace(FACTS, schema=ModelSchema(inputs=inputs, outputs=FACTS.schema.outputs))

    x, name = FACTS.schema.inputs
    assert input_changes(FACTS, facts_with(x, name)) == []
    assert input_changes(FACTS, facts_with(name, x)) == [
        "reordered to name, x, the order of an Open Inference Protocol [N, F] tensor"
    ]
    assert input_changes(FACTS, facts_with(x, Field("name", DataType.INT32), Field("z", DataType.STR))) == [
        "added z",
        "retyped name Str -> Int32",
    ]
