"""A classifier's per-class columns are named after its classes, and ``/model/sample_request`` is
the model's saved input example: over real HTTP against real MLflow models, and unit by unit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scorer_mlflow.classes import named_by_class
from scorer_mlflow.examples import example_cells

from conformance import start_server
from scorer_core import DataType, Field

ENV = {"SCORER_LOAD_PLUGINS": "mlflow"}
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def probability_classifier(tmp_path_factory, iris_classifier, sklearn_requirements):
    """A pipeline answering predict_proba, trained on class names, saved with an input example."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    iris = load_iris()
    X = iris_classifier.X
    y = iris.target_names[iris.target]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    path = tmp_path_factory.mktemp("models") / "iris-proba"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict_proba(X)),
        input_example=X.iloc[[70, 0]],
        pyfunc_predict_fn="predict_proba",
        serialization_format="cloudpickle",
        pip_requirements=sklearn_requirements,
    )
    return SimpleNamespace(path=path, model=model, X=X)


@pytest.mark.slow
def test_probability_columns_are_named_after_the_classes(probability_classifier):
    X = probability_classifier.X.iloc[[0, 60, 120]]
    rows = [[repr(float(v)) for v in row] for row in X.itertuples(index=False)]
    with start_server(probability_classifier.path, env=ENV, record_headers=False) as target:
        schema = target.get("/model/schema").json()["schema"]
        reply = target.post("/model/score", {"fields": list(X.columns), "rows": rows})
    expected = [f"prediction.{c}" for c in IRIS_CLASSES]
    assert [f["name"] for f in schema["outputFields"]] == expected
    assert reply.status == 200, reply
    assert reply.json()["fields"] == expected
    got = np.array([[float(cell) for cell in row] for row in reply.json()["score"]])
    assert np.allclose(got, probability_classifier.model.predict_proba(X), rtol=1e-12)
    assert [IRIS_CLASSES[i] for i in got.argmax(axis=1)] == ["setosa", "versicolor", "virginica"]


@pytest.mark.slow
def test_sample_request_is_the_saved_input_example_and_scores(probability_classifier):
    X = probability_classifier.X
    with start_server(probability_classifier.path, env=ENV, record_headers=False) as target:
        sample = target.get("/model/sample_request").json()
        reply = target.post("/model/score", sample)
    assert sample == {"fields": list(X.columns), "rows": [[repr(float(v)) for v in X.iloc[70]]]}
    assert reply.status == 200, reply
    expected = probability_classifier.model.predict_proba(X.iloc[[70]])[0]
    assert np.allclose([float(cell) for cell in reply.json()["score"][0]], expected, rtol=1e-12)


@pytest.mark.slow
def test_without_an_input_example_the_sample_request_is_one_placeholder_per_type(iris_classifier):
    with start_server(iris_classifier.path, env=ENV, record_headers=False) as target:
        sample = target.get("/model/sample_request").json()
    assert sample == {"fields": list(iris_classifier.X.columns), "rows": [["0", "0", "0", "0"]]}


MIXED = [
    Field("age", DataType.INT64),
    Field("income", DataType.FLOAT64),
    Field("city", DataType.STR),
    Field("member", DataType.BOOL),
    Field("joined", DataType.TIME64),
]


def test_example_cells_are_the_first_row_in_the_schemas_order_as_the_server_parses_them():
    example = pd.DataFrame(
        {
            "joined": pd.to_datetime(["2021-03-04 05:06:07", "2022-01-01 00:00:00"]),
            "member": [True, False],
            "city": ["Praha", "Brno"],
            "income": [1234.5, 0.1],
            "age": np.array([42, 7], dtype=np.int64),
        }
    )
    assert example_cells(example, MIXED) == ("42", "1234.5", "Praha", "true", "2021-03-04T05:06:07")


def test_missing_example_values_take_the_types_placeholder():
    example = pd.DataFrame(
        {"age": [None], "income": [float("inf")], "city": [None], "member": [None], "joined": [pd.NaT]}
    )
    assert example_cells(example, MIXED) == ("0", "0", "text", "true", "2018-01-01")


def test_example_cells_from_columns_by_name_and_rows_by_position():
    columns = {"age": [3, 4], "income": 0.25, "city": "Ostrava", "member": [False], "joined": ["2020-02-02"]}
    assert example_cells(columns, MIXED) == ("3", "0.25", "Ostrava", "false", "2020-02-02")
    tensor = [Field("x0", DataType.FLOAT32), Field("x1", DataType.FLOAT32)]
    assert example_cells(np.array([[1.5, -2.0], [0.0, 0.0]], dtype=np.float32), tensor) == ("1.5", "-2.0")


def test_an_example_that_does_not_fit_the_inputs_gives_no_row():
    assert example_cells(pd.DataFrame({"other": [1]}), MIXED) is None
    assert example_cells(pd.DataFrame({name: [] for name in ("a", "b")}), MIXED[:2]) is None
    assert example_cells({"age": [1]}, MIXED) is None
    assert example_cells(np.zeros((2, 3)), MIXED) is None
    assert example_cells([[1, 2], [3]], MIXED[:2]) is None


def test_only_the_runtimes_own_numbering_is_replaced_by_class_names():
    numbered = [Field(f"prediction.{i}", DataType.FLOAT64) for i in range(3)]
    assert [f.name for f in named_by_class(numbered, IRIS_CLASSES)] == [
        "prediction.setosa",
        "prediction.versicolor",
        "prediction.virginica",
    ]
    named = [Field(f"species.{c}", DataType.FLOAT64) for c in ("a", "b", "c")]
    assert named_by_class(named, IRIS_CLASSES) == named
    assert named_by_class(numbered, ["no", "yes"]) == numbered
    assert named_by_class(numbered, None) == numbered
