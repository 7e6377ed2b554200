"""A model MLflow cannot load stops ``scorer serve`` with one line, before the server listens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from scorer_mlflow.mlmodel import read_mlmodel

# Each test starts `scorer serve`, which loads MLflow (seconds) before it refuses the model.
pytestmark = pytest.mark.slow

ENV = {**os.environ, "SCORER_LOAD_PLUGINS": "mlflow"}


def serve(path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", str(path), "--port", "0", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken_copy(source, tmp_path, edit):
    target = tmp_path / "model"
    shutil.copytree(source, target)
    edit(target)
    return target


def bad_yaml(model):
    (model / "MLmodel").write_text("flavors:\n  python_function: {loader_module: [unclosed\n")


def missing_model_file(model):
    document = yaml.safe_load((model / "MLmodel").read_text())
    (model / document["flavors"]["python_function"]["model_path"]).unlink()


def only_sklearn(model):
    document = yaml.safe_load((model / "MLmodel").read_text())
    del document["flavors"]["python_function"]
    (model / "MLmodel").write_text(yaml.safe_dump(document))


def not_a_mapping(model):
    (model / "MLmodel").write_text("- just\n- a list\n")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (bad_yaml, "is not valid YAML at line 3, column 1: expected ',' or ']'"),
        (missing_model_file, "names the model file 'model.pkl' (python_function.model_path), which does not exist"),
        (only_sklearn, "has no python_function flavor (it has: sklearn), so it cannot be served as a pyfunc"),
        (not_a_mapping, "is not an MLmodel descriptor: expected a YAML mapping with 'flavors', got list"),
    ],
)
@pytest.mark.parametrize("runtime", [None, "mlflow-scorer"])
def test_a_broken_mlmodel_is_one_line_naming_the_file(iris_classifier, tmp_path, edit, problem, runtime):
    model = broken_copy(iris_classifier.path, tmp_path, edit)
    result = serve(model, *(["--runtime", runtime] if runtime else []))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"scorer: error: '{model / 'MLmodel'}' ")
    assert problem in lines[0]
    assert "Traceback" not in result.stderr and "Listening on http" not in result.stdout + result.stderr


def test_a_directory_without_mlmodel_names_itself(tmp_path):
    result = serve(tmp_path, "--runtime", "mlflow-scorer")
    assert result.returncode == 2
    assert result.stderr.strip() == f"scorer: error: '{tmp_path}' is not an MLflow model directory (no MLmodel file)"


def no_input_signature(model):
    document = yaml.safe_load((model / "MLmodel").read_text())
    document["signature"] = {"inputs": None, "outputs": document["signature"]["outputs"], "params": None}
    (model / "MLmodel").write_text(yaml.safe_dump(document))


def test_a_model_saved_without_a_signature_is_refused_before_listening(unsigned_model):
    result = serve(unsigned_model.path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"scorer: error: '{unsigned_model.path / 'MLmodel'}' has no input signature, so request cells "
        "cannot be typed; save it with signature=mlflow.models.infer_signature(X, model.predict(X))"
    )
    assert "Listening on" not in result.stdout


def test_a_signature_with_outputs_only_is_refused_before_listening(iris_classifier, tmp_path):
    model = broken_copy(iris_classifier.path, tmp_path, no_input_signature)
    result = serve(model, "--runtime", "mlflow-scorer")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"scorer: error: '{model / 'MLmodel'}' has no input signature, so request cells cannot be typed; "
        "save it with signature=mlflow.models.infer_signature(X, model.predict(X))"
    ]


@pytest.mark.parametrize("fixture", ["iris_classifier", "mixed_model", "tensor_model", "example_only_model"])
def test_an_mlmodel_reads_as_the_reference_yaml_parser_reads_it(request, fixture):
    """libyaml's parser reads what MLflow wrote as PyYAML's own parser does (a document it refuses
    is told by PyYAML's own parser: the test above)."""
    model = request.getfixturevalue(fixture).path
    assert read_mlmodel(model / "MLmodel") == yaml.safe_load((model / "MLmodel").read_text())
