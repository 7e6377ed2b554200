"""A model saved in another environment is warned of once at load, as MLflow warns of it, without
MLflow's scan of every installed distribution's files."""

from __future__ import annotations

import logging
import shutil
import sys
from importlib.metadata import version

import pytest
import yaml
from scorer_mlflow.environment import python_mismatch, requirement_mismatches
from scorer_mlflow.runtime import MlflowRuntime

RUNNING = ".".join(map(str, sys.version_info[:3]))


def test_each_requirement_not_met_is_named_with_what_is_installed(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "\n".join(
            [
                "# a comment, then an option and a blank line",
                "-r other-requirements.txt",
                "",
                f"numpy=={version('numpy')}",
                "numpy<1  # too old for what is installed",
                "no-such-distribution-here==1.0",
                "pandas",
                "mlflow>=3",
                'scikit-learn==0.1; python_version < "3"',
                "private-thing @ https://example.invalid/private_thing-1.0-py3-none-any.whl",
                "not a requirement at all ==",
            ]
        )
    )
    assert requirement_mismatches(tmp_path) == [
        f"numpy (installed: {version('numpy')}, required: numpy<1)",
        "no-such-distribution-here (installed: none, required: no-such-distribution-here==1.0)",
    ]


def test_a_model_without_requirements_has_none_to_miss(tmp_path):
    assert requirement_mismatches(tmp_path) == []


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        (RUNNING, None),
        (f"{sys.version_info[0]}.{sys.version_info[1]}.0", None),  # another patch release: same
        (f"{sys.version_info[0]}.{sys.version_info[1] + 1}.2", f"the model was saved with Python "
         f"{sys.version_info[0]}.{sys.version_info[1] + 1}.2; this is Python {RUNNING}"),
        (None, f"the model does not record the Python it was saved with; this is Python {RUNNING}"),
        ("three", f"the model records Python 'three', which is no version; this is Python {RUNNING}"),
    ],
)  # fmt: skip
def test_the_python_a_model_was_saved_with_differs_only_by_its_minor_version(saved, expected):
    flavor = {"loader_module": "mlflow.sklearn"} | ({"python_version": saved} if saved else {})
    assert python_mismatch({"flavors": {"python_function": flavor}}) == expected


def test_a_load_warns_once_naming_every_mismatch_and_a_matching_model_not_at_all(
    iris_classifier, tmp_path, caplog
):
    caplog.set_level(logging.WARNING)
    MlflowRuntime().load(iris_classifier.path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

    model = tmp_path / "model"
    shutil.copytree(iris_classifier.path, model)
    (model / "requirements.txt").write_text("scikit-learn==0.1\nno-such-distribution-here\n")
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["python_version"] = "3.0.1"
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    caplog.clear()
    MlflowRuntime().load(model)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1, caplog.text
    message = warned[0].getMessage()
    assert warned[0].name == "scorer_mlflow.environment"
    assert f"The model at '{model}' was saved in another environment" in message
    assert f"scikit-learn (installed: {version('scikit-learn')}, required: scikit-learn==0.1)" in message
    assert "no-such-distribution-here (installed: none, required: no-such-distribution-here)" in message
    assert f"the model was saved with Python 3.0.1; this is Python {RUNNING}" in message
