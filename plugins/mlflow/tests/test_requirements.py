"""The pinned requirements of the models the project saves itself: the versions installed, and no
fewer packages than MLflow's own inference finds."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from scorer_mlflow.demo import IRIS_REQUIREMENTS, build_iris_model
from scorer_mlflow.requirements import pinned_requirements


def requirement_lines(model: Path) -> list[str]:
    return [line for line in (model / "requirements.txt").read_text().splitlines() if line.strip()]


def test_each_distribution_is_pinned_to_its_installed_version_in_order():
    assert pinned_requirements(["pandas", "mlflow", "scorer-mlflow"]) == [
        f"pandas=={version('pandas')}",
        f"mlflow=={version('mlflow')}",
        f"scorer-mlflow=={version('scorer-mlflow')}",
    ]


def test_a_distribution_not_installed_is_named():
    with pytest.raises(PackageNotFoundError, match="no-such-distribution-here is not installed"):
        pinned_requirements(["numpy", "no-such-distribution-here"])


@pytest.mark.slow  # trains the demo, and has MLflow infer requirements in a second Python
def test_the_demo_pins_every_package_mlflow_would_infer(tmp_path):
    import mlflow.pyfunc

    demo = build_iris_model(tmp_path)
    assert requirement_lines(demo) == pinned_requirements(IRIS_REQUIREMENTS)
    # The same model saved again without requirements: MLflow infers them, as it did for the
    # demo before it pinned its own.
    inferred = tmp_path / "inferred"
    mlflow.pyfunc.save_model(
        str(inferred), python_model=mlflow.pyfunc.load_model(str(demo)).unwrap_python_model()
    )
    assert set(requirement_lines(inferred)) <= set(requirement_lines(demo))
