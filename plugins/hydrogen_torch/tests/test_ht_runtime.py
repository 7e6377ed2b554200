"""hydrogen-torch-scorer on real torch models saved as MLflow pyfunc models, in-process and over HTTP."""

from __future__ import annotations

import json
import threading

import ht_networks
import numpy as np
import pytest
import torch
from scorer_hydrogen_torch.runtime import HydrogenTorchRuntime

import conformance
from conformance import start_server
from scorer_core import RowCountMismatch
from scorer_core.config.plugins import load_plugins
from scorer_core.config.settings import load_settings
from scorer_core.wire.cells import build_frame

from .conftest import PLAIN_REQUIREMENTS, SERVER_ENV, TESTDATA, image_cell

TEXTS = ["good movie", "awful plot", "the actor was okay", "", "great great great", "unknown words only"]


def loaded(path, monkeypatch=None, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime = HydrogenTorchRuntime()
    runtime.load(path)
    return runtime


def score(runtime, fields, rows):
    frame = build_frame(fields, rows, runtime.schema.inputs)
    return [json.loads(cell) for cell in runtime.score(frame)["output"]]


def text_probabilities(network, texts):
    """What the network itself says, computed here without the plugin."""
    ids = torch.zeros((len(texts), 8), dtype=torch.int64)
    for row, text in enumerate(texts):
        tokens = [ht_networks.VOCAB.get(t, 1) for t in text.lower().split()][:8]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
    with torch.no_grad():
        return torch.softmax(network(ids), dim=1).numpy()


def test_ht_models_are_claimed_ahead_of_mlflow_scorer(text_model, seed_model, tmp_path):
    import mlflow.pyfunc

    plugins = load_plugins(load_settings(load_plugins="mlflow,hydrogen_torch"))
    assert plugins.select_runtime(text_model.path, None).name == "hydrogen-torch-scorer"
    assert plugins.select_runtime(seed_model.path, None).name == "hydrogen-torch-scorer"
    assert plugins.select_runtime(text_model.path, "mlflow-scorer").name == "mlflow-scorer"
    from ht_seed_model import SeedBlobModel

    plain = tmp_path / "plain"
    mlflow.pyfunc.save_model(
        str(plain),
        python_model=SeedBlobModel(),
        artifacts={"vectors": str(TESTDATA / "seed_vectors.json")},
        pip_requirements=PLAIN_REQUIREMENTS,
    )
    assert plugins.select_runtime(plain, None).name == "mlflow-scorer"


def test_schema_is_the_signatures_inputs_and_one_output_field(text_model):
    runtime = loaded(text_model.path)
    assert runtime.schema.input_names == ["text"]
    assert runtime.schema.output_names == ["output"]


def test_text_classifier_rows_are_the_networks_own_probabilities(text_model):
    runtime = loaded(text_model.path)
    rows = score(runtime, ["text"], [[t] for t in TEXTS])
    expected = text_probabilities(text_model.network, TEXTS)
    assert [r["labels"] for r in rows] == [ht_networks.TEXT_LABELS] * len(TEXTS)
    np.testing.assert_allclose([r["predictions"] for r in rows], expected, rtol=1e-6)


def test_a_single_row_comes_back_flat(text_model):
    [row] = score(loaded(text_model.path), ["text"], [["good movie"]])
    assert len(row["predictions"]) == 3 and all(isinstance(p, float) for p in row["predictions"])


def test_image_classifier_from_a_pickled_module(image_model):
    runtime = loaded(image_model.path)
    rows = score(runtime, ["image"], [[image_cell(i)] for i in range(4)])
    assert [r["labels"] for r in rows] == [ht_networks.IMAGE_LABELS] * 4
    assert all(abs(sum(r["predictions"]) - 1) < 1e-6 for r in rows)


def test_a_bad_image_is_a_400_naming_row_and_field(image_model):
    from scorer_core import InvalidRequest

    runtime = loaded(image_model.path)
    with pytest.raises(InvalidRequest, match="Row 1, field 'image': the image has 3 bytes, expected 192"):
        score(runtime, ["image"], [[image_cell(0)], ["AAAA"]])


def test_regression_head_answers_per_row_natively(regression_model):
    runtime = loaded(regression_model.path)
    features = [["0.5", "1", "-2", "3"], ["", "0", "0", "0"]]
    rows = score(runtime, ht_networks.TABULAR_COLUMNS, features)
    with torch.no_grad():
        wanted = regression_model.network(torch.tensor([[0.5, 1, -2, 3], [0, 0, 0, 0]], dtype=torch.float32))
    np.testing.assert_allclose([r["predictions"] for r in rows], wanted.numpy(), rtol=1e-6)
    assert "labels" not in rows[0]


def test_batches_run_once_on_the_device_in_inference_mode(probe_model):
    ht_networks.InferenceProbe.calls.clear()
    runtime = loaded(probe_model.path)
    score(runtime, ["text"], [[t] for t in TEXTS])
    assert ht_networks.InferenceProbe.calls == [(True, runtime.device.type, len(TEXTS))]


def test_merged_batches_give_each_row_what_it_gets_alone(text_model):
    runtime = loaded(text_model.path)
    together = score(runtime, ["text"], [[t] for t in TEXTS])
    alone = [score(runtime, ["text"], [[t]])[0] for t in TEXTS]
    for merged, single in zip(together, alone, strict=True):
        assert merged["labels"] == single["labels"]
        np.testing.assert_allclose(merged["predictions"], single["predictions"], rtol=1e-6)


def test_onnx_backend_agrees_with_torch(text_model, monkeypatch):
    by_torch = score(loaded(text_model.path), ["text"], [[t] for t in TEXTS])
    onnx = loaded(text_model.path, monkeypatch, SCORER_TORCH_BACKEND="onnx")
    assert onnx.backend == "onnx"
    by_onnx = score(onnx, ["text"], [[t] for t in TEXTS])
    np.testing.assert_allclose(
        [r["predictions"] for r in by_onnx], [r["predictions"] for r in by_torch], rtol=1e-5
    )


def test_a_model_returning_the_wrong_row_count_is_refused(seed_model):
    runtime = loaded(seed_model.path)
    frame = build_frame(["text"], [["a"], ["b"]], runtime.schema.inputs)
    runtime._pyfunc.unwrap_python_model().blobs[2] = runtime._pyfunc.unwrap_python_model().blobs[3]
    with pytest.raises(RowCountMismatch, match="returned 3 rows for a request of 2 rows"):
        runtime.score(frame)


# --- over HTTP -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rows", [1, 2, 3])
def test_the_guides_examples_come_back_exactly_over_http(seed_model, rows):
    vectors = json.loads((TESTDATA / "seed_vectors.json").read_text())
    wanted = next(v["runtime_2_0"] for v in vectors if len(v["runtime_2_0"]["rows"]) == rows)
    with start_server(seed_model.path, env=SERVER_ENV, record_headers=False) as target:
        reply = target.post("/model/score", {"fields": ["text"], "rows": [[f"row {i}"] for i in range(rows)]})
        assert reply.status == 200, reply.text
        body = reply.json()
        assert body["fields"] == wanted["fields"]
        assert [[json.loads(c) for c in r] for r in body["score"]] == [
            [json.loads(c) for c in r] for r in wanted["rows"]
        ]
        assert body["score"] == wanted["rows"]


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_split_back(text_model):
    """Requests merged into one torch call get exactly what each gets alone."""
    with start_server(text_model.path, env=SERVER_ENV, record_headers=False) as target:
        alone = {
            t: target.post("/model/score", {"fields": ["text"], "rows": [[t]]}).json()["score"] for t in TEXTS
        }
        replies: dict[int, object] = {}

        def send(i):
            body = {"fields": ["text"], "rows": [[TEXTS[(i + k) % len(TEXTS)]] for k in range(1 + i % 3)]}
            replies[i] = (body, target.post("/model/score", body))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(48)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for body, reply in replies.values():
            assert reply.status == 200, reply.text
            got = [json.loads(r[0]) for r in reply.json()["score"]]
            want = [json.loads(alone[t][0][0]) for [t] in body["rows"]]
            for g, w in zip(got, want, strict=True):
                assert g["labels"] == w["labels"]
                np.testing.assert_allclose(g["predictions"], w["predictions"], rtol=1e-6)


@pytest.mark.slow
def test_headers_reach_model_code_per_request_and_are_never_mixed(header_model):
    env = {**SERVER_ENV, "H2O_SCORER_FORWARD_HEADERS": "Authorization"}
    with start_server(header_model.path, env=env, record_headers=False) as target:
        replies: dict[int, object] = {}

        def send(i):
            headers = {"Authorization": f"Bearer tenant-{i % 4}"}
            body = {"fields": ["text"], "rows": [["good movie"], ["bad plot"]]}
            replies[i] = target.post("/model/score", body, headers=headers)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for i, reply in replies.items():
            assert reply.status == 200, reply.text
            assert [json.loads(r[0])["caller"] for r in reply.json()["score"]] == [
                f"Bearer tenant-{i % 4}"
            ] * 2


@pytest.mark.slow
def test_cuda_asked_for_on_a_cpu_machine_stops_start_up(text_model):
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", "--port", "0", str(text_model.path)],
        env={**__import__("os").environ, **SERVER_ENV, "SCORER_TORCH_DEVICE": "cuda"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "SCORER_TORCH_DEVICE='cuda' but torch sees no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr


class Float32Suite(conformance.RuntimeSuite):
    """torch computes in float32: a row's numbers agree across batch sizes to about 1e-7."""

    @pytest.fixture(scope="class")
    @classmethod
    def scorer_relative_tolerance(cls):
        return 1e-6


@pytest.mark.slow
class TestTextClassifierConformance(Float32Suite):
    scorer_target = conformance.served(lambda fixture: fixture("text_model").path, env=SERVER_ENV)


@pytest.mark.slow
class TestImageClassifierInAWorkerProcess(Float32Suite):
    scorer_target = conformance.served(
        lambda fixture: fixture("image_model").path, env={**SERVER_ENV, "BATCH_WORKERS": "1"}
    )
