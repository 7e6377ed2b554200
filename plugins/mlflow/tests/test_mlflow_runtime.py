"""mlflow-scorer over real HTTP, against real MLflow models saved by the fixtures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scorer_mlflow.runtime import MlflowRuntime

import conformance
from conformance import start_server
from scorer_core import DataType, Field

pytestmark = pytest.mark.slow

ENV = {"SCORER_LOAD_PLUGINS": "mlflow"}


def rows_of(frame):
    return [[repr(float(v)) for v in row] for row in frame.itertuples(index=False)]


def test_can_load_detects_mlflow_model_directories(iris_classifier, tmp_path):
    assert MlflowRuntime.can_load(iris_classifier.path)
    assert MlflowRuntime.can_load(iris_classifier.path / "MLmodel")
    assert not MlflowRuntime.can_load(tmp_path)
    assert not MlflowRuntime.can_load(tmp_path / "model.mojo")


def test_schema_comes_from_the_signature(iris_classifier):
    runtime = MlflowRuntime()
    runtime.load(iris_classifier.path)
    assert runtime.schema.inputs == tuple(Field(c, DataType.FLOAT64) for c in iris_classifier.X.columns)
    assert runtime.schema.outputs == (Field("prediction", DataType.INT64),)


def test_tensor_signature_becomes_numbered_fields(tensor_model):
    runtime = MlflowRuntime()
    runtime.load(tensor_model.path)
    assert runtime.schema.input_names == ["x0", "x1"]
    with start_server(tensor_model.path, env=ENV, record_headers=False) as target:
        reply = target.post("/model/score", {"fields": ["x0", "x1"], "rows": [["1", "2"], ["3", "0.5"]]})
    assert reply.status == 200, reply
    got = [float(row[0]) for row in reply.json()["score"]]
    assert np.allclose(got, tensor_model.model.predict(np.array([[1, 2], [3, 0.5]])), rtol=1e-12)


def test_outputs_are_learnt_from_the_input_example_without_an_output_signature(example_only_model):
    runtime = MlflowRuntime()
    runtime.load(example_only_model.path)
    assert runtime.schema.output_names == ["prediction"]


def test_classifier_scores_match_scikit_learn(iris_classifier):
    X = iris_classifier.X
    with start_server(iris_classifier.path, env=ENV, record_headers=False) as target:
        reply = target.post("/model/score", {"fields": list(X.columns), "rows": rows_of(X)})
    assert reply.status == 200, reply
    body = reply.json()
    assert body["fields"] == ["prediction"]
    assert [row[0] for row in body["score"]] == [str(v) for v in iris_classifier.model.predict(X)]


def test_regressor_scores_match_scikit_learn(diabetes_regressor):
    X = diabetes_regressor.X.iloc[:50]
    with start_server(diabetes_regressor.path, env=ENV, record_headers=False) as target:
        reply = target.post("/model/score", {"fields": list(X.columns), "rows": rows_of(X)})
    assert reply.status == 200, reply
    expected = diabetes_regressor.model.predict(X)
    got = [float(row[0]) for row in reply.json()["score"]]
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, expected, strict=True))


def test_pyfunc_model_reads_forwarded_headers_as_the_guide_shows(header_model):
    env = {**ENV, "H2O_SCORER_FORWARD_HEADERS": "Authorization"}
    with start_server(header_model.path, env=env, record_headers=False) as target:
        reply = target.post(
            "/model/score",
            {"fields": ["x"], "rows": [["1"], ["2"]]},
            headers={"Authorization": "Bearer from-client", "traceparent": "00-abc-def-01"},
        )
        assert reply.status == 200, reply
        assert reply.json()["score"] == [["Bearer from-client"], ["Bearer from-client"]]
        anonymous = target.post("/model/score", {"fields": ["x"], "rows": [["1"]]})
        assert anonymous.json()["score"] == [[""]]


def test_missing_value_in_an_integer_column_is_a_400_naming_row_field_and_type(tmp_path, sklearn_requirements):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    path = tmp_path / "int-model"
    example = pd.DataFrame({"n": np.array([1, 2], dtype=np.int64)})
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(Path(__file__).parent / "models" / "header_model.py"),
        signature=infer_signature(example, np.array(["a", "b"])),
        pip_requirements=sklearn_requirements[:1],  # mlflow: the model's file imports no more
    )
    with start_server(path, env=ENV, record_headers=False) as target:
        for missing in ("", "NaN", None):
            reply = target.post("/model/score", {"fields": ["n"], "rows": [["1"], ["7"], [missing]]})
            assert reply.status == 400, reply
            assert reply.json()["detail"] == (  # ours, not MLflow's 900 characters quoting every row
                "Invalid scoring request due to: Row 2, field 'n': a value is required; the model's "
                "MLflow signature types 'n' as an integer, which cannot be missing"
            )
        assert target.post("/model/score", {"fields": ["n"], "rows": [["1"]]}).status == 200


def test_demo_model_serves_the_readme_request(tmp_path):
    env = {**ENV, "SCORER_DEMO_DIR": str(tmp_path)}
    with start_server(None, env=env, record_headers=False) as target:
        reply = target.post(
            "/model/score",
            {
                "fields": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                "rows": [["5.1", "3.5", "1.4", "0.2"], ["6.7", "3.0", "5.2", "2.3"]],
            },
        )
    assert reply.status == 200, reply
    body = reply.json()
    assert body["fields"] == ["species", "species.setosa", "species.versicolor", "species.virginica"]
    assert [row[0] for row in body["score"]] == ["setosa", "virginica"]
    for row in body["score"]:
        assert math.isclose(sum(float(p) for p in row[1:]), 1.0, rel_tol=1e-9)


class TestClassifierConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(lambda fixture: fixture("iris_classifier").path, env=ENV)


class TestRegressorConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(lambda fixture: fixture("diabetes_regressor").path, env=ENV)


class TestHeaderModelConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(lambda fixture: fixture("header_model").path, env=ENV)


class TestClassifierInWorkerProcesses(conformance.RuntimeSuite):
    """The real MLflow model in two worker processes: the contract, headers included, still holds."""

    scorer_target = conformance.served(
        lambda fixture: fixture("iris_classifier").path, env={**ENV, "BATCH_WORKERS": "2"}
    )
