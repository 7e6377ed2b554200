"""Models saved by plain MLflow, as Hydrogen Torch releases them, served with the runtime chosen.

They carry no ``metadata.hydrogen_torch``: detection leaves them to mlflow-scorer, and
``--runtime hydrogen-torch-scorer`` (or ``SCORER_RUNTIME``) serves them with runtime 2.0's split,
by ``SCORER_HT_TASK`` / ``SCORER_HT_ROW_KEYS``, or by default on ``predictions`` alone.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from scorer_hydrogen_torch.runtime import HydrogenTorchRuntime

from conformance import start_server
from scorer_core import ConfigurationError, RowCountMismatch
from scorer_core.config.plugins import load_plugins
from scorer_core.config.settings import load_settings
from scorer_core.wire.cells import build_frame

from .conftest import SERVER_ENV, TESTDATA

VECTORS = json.loads((TESTDATA / "seed_vectors.json").read_text())


def loaded(path, caplog=None):
    runtime = HydrogenTorchRuntime()
    runtime.load(path)
    return runtime


def cells(runtime, texts):
    frame = build_frame(["text"], [[t] for t in texts], runtime.schema.inputs)
    return list(runtime.score(frame)["output"])


def test_detection_still_needs_the_metadata(plain_seed_model):
    plugins = load_plugins(load_settings(load_plugins="mlflow,hydrogen_torch"))
    assert plugins.select_runtime(plain_seed_model.path, None).name == "mlflow-scorer"
    assert plugins.select_runtime(plain_seed_model.path, "hydrogen-torch-scorer").name == "hydrogen-torch-scorer"


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["section"])
def test_the_default_rule_gives_the_guides_vectors_byte_for_byte(plain_seed_model, vector, caplog):
    caplog.set_level(logging.INFO)
    runtime = loaded(plain_seed_model.path)
    wanted = vector["runtime_2_0"]["rows"]
    assert cells(runtime, [f"row {i}" for i in range(len(wanted))]) == [row[0] for row in wanted]
    assert "Hydrogen Torch output rule: the default for models without hydrogen_torch metadata" in caplog.text
    assert "a legacy blob's 'predictions' split one entry per row, every other key copied" in caplog.text


def test_a_newer_per_row_model_is_passed_through(plain_models):
    runtime = loaded(plain_models.per_row)
    out = cells(runtime, ["ab", "abcd", "x"])
    assert [json.loads(c)["predictions"] for c in out] == [[2, 0.5], [4, 0.5], [1, 0.5]]


def test_a_newer_per_row_model_is_recognised_at_load_so_one_row_alone_or_merged_agree(plain_models, caplog):
    caplog.set_level(logging.INFO)
    runtime = loaded(plain_models.per_row)
    assert runtime.metadata.output_format == "per_row"
    assert "output format, found by scoring the sample row twice: per_row" in caplog.text
    assert json.loads(cells(runtime, ["ab"])[0])["predictions"] == [2, 0.5]
    legacy = loaded(plain_models.short_blob)
    assert legacy.metadata.output_format == "legacy_blob"


def test_the_output_format_setting_is_taken_as_said(plain_models, monkeypatch):
    monkeypatch.setenv("SCORER_HT_OUTPUT_FORMAT", "legacy_blob")
    runtime = loaded(plain_models.per_row)
    assert runtime.metadata.output_format == "legacy_blob"
    with pytest.raises(RowCountMismatch, match="returned 2 rows for a request of 1 rows"):
        cells(runtime, ["ab"])


def test_metadata_that_is_not_a_mapping_stops_start_up(plain_seed_model, tmp_path):
    import shutil

    import yaml

    model = tmp_path / "bad-meta"
    shutil.copytree(plain_seed_model.path, model)
    document = yaml.safe_load((model / "MLmodel").read_text())
    document["metadata"] = {"hydrogen_torch": "text_classification"}
    (model / "MLmodel").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigurationError, match=r"metadata\.hydrogen_torch is a str, not a mapping"):
        HydrogenTorchRuntime.check_model(model)


def test_a_blob_whose_predictions_miss_rows_is_a_row_count_error(plain_models):
    runtime = loaded(plain_models.short_blob)
    assert len(cells(runtime, ["a", "b"])) == 2
    with pytest.raises(RowCountMismatch, match="returned 2 rows for a request of 3 rows"):
        cells(runtime, ["a", "b", "c"])


def test_the_task_setting_names_the_per_row_keys(plain_models, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    by_default = [json.loads(c) for c in cells(loaded(plain_models.tokens), ["a", "b"])]
    assert by_default[1]["offsets"] == [[[0, 1]], [[0, 2]]], "offsets copied whole by the default rule"
    monkeypatch.setenv("SCORER_HT_TASK", "text_token_classification")
    by_task = [json.loads(c) for c in cells(loaded(plain_models.tokens), ["a", "b"])]
    assert [r["offsets"] for r in by_task] == [[[0, 1]], [[0, 2]]]
    assert [r["predictions"] for r in by_task] == [["tag0"], ["tag1"]]
    assert by_task[0]["labels"] == ["tag0", "tag1", "tag2"]
    assert "Hydrogen Torch output rule: SCORER_HT_TASK=text_token_classification" in caplog.text


def test_row_keys_override_the_task(plain_models, monkeypatch):
    monkeypatch.setenv("SCORER_HT_TASK", "text_classification")
    monkeypatch.setenv("SCORER_HT_ROW_KEYS", "predictions, offsets")
    rows = [json.loads(c) for c in cells(loaded(plain_models.tokens), ["a", "b"])]
    assert [r["offsets"] for r in rows] == [[[0, 1]], [[0, 2]]]


def test_the_models_metadata_decides_over_the_settings(seed_model, monkeypatch, caplog):
    monkeypatch.setenv("SCORER_HT_ROW_KEYS", "labels")
    monkeypatch.setenv("SCORER_HT_OUTPUT_FORMAT", "per_row")
    runtime = loaded(seed_model.path)
    assert runtime.metadata.row_keys == ("predictions",)
    assert runtime.metadata.output_format == "legacy_blob"
    assert "SCORER_HT_TASK / SCORER_HT_ROW_KEYS / SCORER_HT_OUTPUT_FORMAT are ignored" in caplog.text


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SCORER_HT_TASK", "poetry", "SCORER_HT_TASK='poetry': not a task this runtime knows"),
        ("SCORER_HT_ROW_KEYS", "predictions,,labels", "expected comma-separated key names"),
        ("SCORER_HT_OUTPUT_FORMAT", "xml", "SCORER_HT_OUTPUT_FORMAT='xml': not one of legacy_blob, per_row"),
    ],
)
def test_bad_settings_stop_start_up_before_the_server_listens(
    plain_seed_model, monkeypatch, variable, value, message
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message):
        HydrogenTorchRuntime.check_model(plain_seed_model.path)
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", str(plain_seed_model.path), "--port", "0",
         "--runtime", "hydrogen-torch-scorer"],
        env={**__import__("os").environ, **SERVER_ENV, variable: value},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr
    assert "Listening on http" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "SCORER_RUNTIME"])
def test_a_released_model_is_served_over_http_with_the_runtime_chosen(plain_seed_model, how):
    env = dict(SERVER_ENV)
    runtime = "hydrogen-torch-scorer" if how == "flag" else None
    if how == "SCORER_RUNTIME":
        env["SCORER_RUNTIME"] = "hydrogen-torch-scorer"
    with start_server(plain_seed_model.path, runtime=runtime, env=env, record_headers=False) as target:
        for vector in VECTORS:
            wanted = vector["runtime_2_0"]
            request = {"fields": ["text"], "rows": [[f"row {i}"] for i in range(len(wanted["rows"]))]}
            body = target.post("/model/score", request).json()
            assert body["fields"] == wanted["fields"] and body["score"] == wanted["rows"]
        log = target.server_log()
    assert "Hydrogen Torch output rule: the default for models without hydrogen_torch metadata" in log
