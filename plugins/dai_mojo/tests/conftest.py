"""Pipelines for the daimojo test double (tests/double), and the environment that selects it.

No Driverless AI pipeline or licence exists on CI machines, so these tests import the double,
which mirrors the installed daimojo 2.9.2 API. test_real_pipeline.py runs the real package.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

DOUBLE = Path(__file__).parent / "double"
LICENCE = "test-licence-key"
if str(DOUBLE) not in sys.path:
    sys.path.insert(0, str(DOUBLE))  # `import daimojo` now finds the double, in this process

#: Environment for servers started by tests: the double first on the path, a licence, this plugin.
SERVER_ENV = {
    "PYTHONPATH": os.pathsep.join(p for p in (str(DOUBLE), os.environ.get("PYTHONPATH", "")) if p),
    "DRIVERLESS_AI_LICENSE_KEY": LICENCE,
    "SCORER_LOAD_PLUGINS": "dai_mojo",
}

REGRESSION = {
    "uuid": "7d3c58a4-regression",
    "target": "price",
    "bias": 10.0,
    "features": [
        {"name": "age", "type": "float64", "weight": 0.5},
        {"name": "rooms", "type": "int32", "weight": 2.0},
        {"name": "city", "type": "string", "levels": {"paris": 3.0, "oslo": -1.0}},
        {"name": "built", "type": "string", "date": True, "weight": 0.01},
        {"name": "garden", "type": "bool", "weight": 1.5},
    ],
    "ops": {"interval": True, "pred_contribs": True, "pred_contribs_original": True},
    "interval_width": 2.5,
}
BINOMIAL = {
    "uuid": "0c1e2f3a-binomial",
    "target": "churn",
    "classes": ["0", "1"],
    "bias": -0.5,
    "features": [
        {"name": "tenure", "type": "int64", "weight": -0.1},
        {"name": "plan", "type": "string", "levels": {"basic": 0.4, "pro": -0.8}},
        {"name": "spend", "type": "float32", "weight": 0.02},
    ],
    "ops": {"pred_contribs": True, "pred_contribs_original": True},
}
MULTICLASS = {
    "uuid": "5b9a0d77-multiclass",
    "target": "species",
    "classes": ["setosa", "versicolor", "virginica"],
    "class_scale": [1.0, -0.5, 0.3],
    "class_shift": [0.0, 0.2, -0.1],
    "bias": 0.25,
    "features": [
        {"name": "petal_length", "type": "float64", "weight": 0.7},
        {"name": "colour", "type": "string", "levels": {"blue": 1.0, "white": -0.3}},
    ],
    "ops": {"pred_contribs_original": True},
}


def write_pipeline(directory: Path, spec: dict[str, Any]) -> Path:
    """A ``mojo-pipeline`` directory as DAI exports it, its pipeline.mojo holding the double's spec."""
    pipeline = directory / "mojo-pipeline"
    pipeline.mkdir(parents=True)
    (pipeline / "pipeline.mojo").write_text(json.dumps({**spec, "licence": LICENCE}))
    return pipeline


@pytest.fixture(autouse=True)
def licence(monkeypatch):
    monkeypatch.setenv("DRIVERLESS_AI_LICENSE_KEY", LICENCE)
    monkeypatch.delenv("DRIVERLESS_AI_LICENSE_FILE", raising=False)


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    return {
        name: write_pipeline(root / name, spec)
        for name, spec in (("regression", REGRESSION), ("binomial", BINOMIAL), ("multiclass", MULTICLASS))
    }
