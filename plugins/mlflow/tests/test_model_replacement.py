"""Real MLflow models replaced while a real server serves them (``POST /admin/model``).

Two scikit-learn regressions trained on the same data with different regularisation answer the
same rows with different predictions, so every answer shows which model scored it.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conformance import ScorerTarget, start_server
from conformance.target import popen_launcher, servers_launched_by

pytestmark = pytest.mark.slow

ADMIN = {"X-Admin-Passphrase": "a-long-admin-passphrase"}
ENV = {"SCORER_LOAD_PLUGINS": "mlflow", "SCORER_ADMIN_PASSPHRASE": ADMIN["X-Admin-Passphrase"]}


@pytest.fixture(scope="module")
def versions(
    tmp_path_factory: pytest.TempPathFactory, sklearn_requirements: list[str]
) -> list[SimpleNamespace]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    data = load_diabetes(as_frame=True)
    X = data.data
    made = []
    for version, alpha in (("v1", 0.1), ("v2", 10.0)):
        model = Ridge(alpha=alpha).fit(X, data.target)
        path = tmp_path_factory.mktemp("registry") / f"diabetes-{version}"
        mlflow.sklearn.save_model(
            model,
            str(path),
            signature=infer_signature(X, model.predict(X)),
            serialization_format="cloudpickle",
            pip_requirements=sklearn_requirements,
        )
        made.append(SimpleNamespace(path=path, model=model, X=X))
    return made


def replace(target: ScorerTarget, body: Any) -> Any:
    return target.post("/admin/model", body, headers=ADMIN, timeout=300)


def rss_kib(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_every_answer_is_the_model_that_scored_it_across_replacements(
    versions: list[SimpleNamespace], workers: str
) -> None:
    X = versions[0].X
    fields = list(X.columns)
    with start_server(
        versions[0].path, env={**ENV, "BATCH_WORKERS": workers}, record_headers=False
    ) as target:
        ids = {target.get("/model/id").text: versions[0].model}
        # Each model's prediction of every row, made once: the clients then compare, where
        # predicting each answer's row again cost more CPU than the server spent scoring it.
        predicted = {id(v.model): v.model.predict(X) for v in versions}
        # Each version's id, known before the clients start: they check every answer by it.
        for version in (versions[1], versions[0]):
            reply = replace(target, {"path": str(version.path)})
            assert reply.status == 200, reply
            ids[reply.json()["current"]["id"]] = version.model
        cells = [[str(v) for v in row] for row in X.itertuples(index=False)]
        stop = threading.Event()
        failures: list[str] = []
        answered: dict[str, int] = {}
        port = int(target.base_url.rsplit(":", 1)[1])

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while not stop.is_set():
                index = int(rng.integers(len(X)))
                body = json.dumps({"fields": fields, "rows": [cells[index]]})
                connection.request("POST", "/model/score", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                if response.status != 200:
                    failures.append(f"HTTP {response.status}: {answer}")
                    continue
                model = ids.get(answer["id"])
                got = np.array([float(v) for v in answer["score"][0]])
                want = predicted[id(model)][index : index + 1] if model is not None else None
                if want is None or not np.allclose(got, want, rtol=1e-9):
                    failures.append(f"model {answer['id']} answered {got}, its model says {want}")
                answered[answer["id"]] = answered.get(answer["id"], 0) + 1
            connection.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
        for thread in threads:
            thread.start()
        try:
            for swap in range(4):
                version = versions[1 - swap % 2]
                reply = replace(target, {"path": str(version.path)})
                assert reply.status == 200, reply
                assert ids[reply.json()["current"]["id"]] is version.model
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
        assert not failures, failures[:5]
        assert len(ids) == 2 and set(answered) == set(ids), answered


def test_a_broken_or_different_model_leaves_the_served_one(
    versions: list[SimpleNamespace], iris_classifier: SimpleNamespace, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(versions[1].path, broken)
    (broken / "MLmodel").write_text("flavors:\n  python_function: {loader_module: [unclosed\n")
    with start_server(versions[0].path, env=ENV, record_headers=False) as target:
        served = target.get("/model/id").text
        reply = replace(target, {"path": str(broken)})
        assert reply.status == 422, reply
        assert "is not valid YAML" in reply.json()["detail"]
        other = replace(target, {"path": str(iris_classifier.path)})
        assert other.status == 409, other
        assert "input fields differ" in other.json()["detail"]
        assert target.get("/model/id").text == served
        row = versions[0].X.iloc[0]
        answer = target.post("/model/score", {"fields": list(row.index), "rows": [[str(v) for v in row]]})
        assert answer.status == 200 and answer.json()["id"] == served


def test_fifty_replacements_of_a_real_model_do_not_grow_the_server(versions: list[SimpleNamespace]) -> None:
    # A fresh interpreter, not a forked one: the bound is relative to RSS, which preloaded
    # libraries would raise (conformance.forkserver).
    with (
        servers_launched_by(popen_launcher),
        start_server(versions[0].path, env=ENV, record_headers=False) as target,
    ):
        assert target.process is not None
        assert replace(target, {"path": str(versions[1].path)}).status == 200
        after_first = rss_kib(target.process.pid)
        for swap in range(1, 50):
            reply = replace(target, {"path": str(versions[swap % 2].path)})
            assert reply.status == 200, reply
        after_fifty = rss_kib(target.process.pid)
        print(f"RSS after the first replacement {after_first} KiB, after fifty {after_fifty} KiB")
        assert after_fifty <= after_first * 1.10, (after_first, after_fifty)
