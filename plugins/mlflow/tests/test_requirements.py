"""The pinned requirements of the models the project saves itself: the versions installed, and
every package the model's pickle imports."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from scorer_mlflow.demo import IRIS_REQUIREMENTS, build_iris_model
from scorer_mlflow.requirements import pickled_distributions, pinned_requirements


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


@pytest.mark.slow  # trains the demo
def test_the_demo_pins_every_package_its_pickle_imports(tmp_path):
    demo = build_iris_model(tmp_path)
    assert requirement_lines(demo) == pinned_requirements(IRIS_REQUIREMENTS)
    # Not compared with MLflow's inference: that also lists what the load happened to import
    # (a CI run found psutil there, a run alone did not).
    needed = pickled_distributions(demo / "python_model.pkl")
    assert {"scikit-learn"} in needed and {"numpy"} in needed, needed
    unpinned = [names for names in needed if not names & set(IRIS_REQUIREMENTS)]
    assert not unpinned, unpinned
