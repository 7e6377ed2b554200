"""Pipelines for the daimojo test double (tests/double), and the environment that selects it.

No Driverless AI pipeline or licence exists on CI machines, so these tests import the double,
which mirrors the installed daimojo 2.9.2 API. test_real_pipeline.py runs the real package.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
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
    "ops": {"interval": True, "treeshap": True},
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
    "ops": {"treeshap": True},
}
#: Transformed names as real pipelines write them, with ':' and '.' inside (a cluster distance,
#: one-hot levels), so that the class suffix is only ever the text after the last '.'.
MULTICLASS = {
    "uuid": "5b9a0d77-multiclass",
    "target": "species",
    "classes": ["setosa", "versicolor", "virginica"],
    "class_scale": [1.0, -0.5, 0.3],
    "class_shift": [0.0, 0.2, -0.1],
    "bias": 0.25,
    "features": [
        {"name": "petal_length", "type": "float64", "weight": 0.7, "transformer": "ClusterDist10"},
        {"name": "colour", "type": "string", "levels": {"blue": 1.0, "white": -0.3}},
    ],
    "ops": {"treeshap": True},
}
_TYPES = {
    "bool": "bool_type",
    "int32": "int32_type",
    "int64": "int64_type",
    "float32": "float32_type",
    "float64": "float64_type",
    "string": "str_type",
}


def _transformed(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each feature's transformed columns, named as DAI names them (``0_OHE:colour.blue``)."""
    columns = []
    for i, feature in enumerate(spec["features"]):
        name = feature["name"]
        if "levels" in feature:
            columns += [
                {"name": f"{i}_OHE:{name}.{level}", "feature": name, "level": level, "weight": weight}
                for level, weight in feature["levels"].items()
            ]
        elif feature.get("date"):
            columns.append(
                {"name": f"{i}_{name}~year", "feature": name, "date": True, "weight": feature["weight"]}
            )
        elif "transformer" in feature:
            columns.append(
                {
                    "name": f"{i}_{feature['transformer']}:{name}.0",
                    "feature": name,
                    "weight": feature["weight"],
                }
            )
        else:
            columns.append({"name": f"{i}_{name}", "feature": name, "weight": feature["weight"]})
    return columns


def pipeline_protobuf(spec: dict[str, Any]) -> bytes:
    """``mojo/pipeline.pb`` for a spec, built with the installed wheel's own ``Pipeline_pb2``."""
    from daimojo import Pipeline_pb2

    pipeline = Pipeline_pb2.Pipeline()
    pipeline.mojo_version = 2
    pipeline.uuid = spec["uuid"]
    pipeline.dai_version = spec.get("dai_version", "1.11.1")
    pipeline.time_created.FromSeconds(1_700_000_000)
    pipeline.missing_values.extend(
        spec.get("missing_values", ["", "?", "None", "nan", "NA", "N/A", "unknown", "inf", "-inf"])
    )
    for feature in spec["features"]:
        column = pipeline.features.columns.add(name=feature["name"])
        getattr(column, _TYPES[feature["type"]]).SetInParent()
    target, classes = spec["target"], spec.get("classes")
    for name in [f"{target}.{c}" for c in classes] if classes else [target]:
        pipeline.outputs.columns.add(name=name).float64_type.SetInParent()
    for column in _transformed(spec):
        pipeline.transformed.columns.add(name=column["name"]).float64_type.SetInParent()
        row = pipeline.orig_matrix.add(raw_feature_name=f"contrib_{column['name']}")
        row.row.add(orig_feature_name=f"contrib_{column['feature']}", value=1.0)
    pipeline.orig_matrix.add(raw_feature_name="contrib_bias").row.add(
        orig_feature_name="contrib_bias", value=1.0
    )
    detail = pipeline.problem.supervised_detail
    detail.target.name = target
    detail.target.labels.extend(classes or [])
    if classes and len(classes) == 2:
        detail.binomial_problem_detail.default_threshold = 0.5
    elif classes:
        detail.multinomial_problem_detail.SetInParent()
    elif spec.get("ops", {}).get("interval"):
        detail.regression_problem_detail.prediction_interval.SetInParent()
    else:
        detail.regression_problem_detail.SetInParent()
    return pipeline.SerializeToString()


def write_pipeline(directory: Path, spec: dict[str, Any]) -> Path:
    """A ``mojo-pipeline`` directory as DAI exports it: ``pipeline.mojo``, a zip holding
    ``mojo/pipeline.pb``, and the double's model beside it in ``mojo/double.json``."""
    pipeline = directory / "mojo-pipeline"
    pipeline.mkdir(parents=True)
    model = {
        "licence": LICENCE,
        "bias": spec["bias"],
        "treeshap": bool(spec.get("ops", {}).get("treeshap")),
        "transformed": [{k: v for k, v in c.items() if k != "name"} for c in _transformed(spec)],
        **{
            key: spec[key]
            for key in ("class_scale", "class_shift", "interval_width", "schema")
            if key in spec
        },
    }
    with zipfile.ZipFile(pipeline / "pipeline.mojo", "w") as archive:
        archive.writestr("mojo/pipeline.pb", pipeline_protobuf(spec))
        archive.writestr("mojo/double.json", json.dumps(model))
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
