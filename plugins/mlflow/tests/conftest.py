"""Real MLflow models, trained and saved in fixtures (scikit-learn ships the data sets)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scorer_mlflow.requirements import pinned_requirements

MODELS = Path(__file__).parent / "models"
#: What the fixtures' scikit-learn models need, written down: without it each save starts a second
#: Python to infer the list (about 2 CPU-seconds each; no test here reads the list).
SKLEARN_REQUIREMENTS = pinned_requirements(["mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas"])


@pytest.fixture(scope="session")
def sklearn_requirements() -> list[str]:
    """``pip_requirements`` for a scikit-learn model a test saves (see SKLEARN_REQUIREMENTS)."""
    return SKLEARN_REQUIREMENTS


@pytest.fixture(scope="session")
def iris_classifier(tmp_path_factory):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    X = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    model = LogisticRegression(max_iter=1000).fit(X, iris.target)
    path = tmp_path_factory.mktemp("models") / "iris-classifier"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        serialization_format="cloudpickle",
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return SimpleNamespace(path=path, model=model, X=X)


@pytest.fixture(scope="session")
def diabetes_regressor(tmp_path_factory):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    data = load_diabetes(as_frame=True)
    X = data.data
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, data.target)
    path = tmp_path_factory.mktemp("models") / "diabetes-regressor"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        serialization_format="cloudpickle",
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return SimpleNamespace(path=path, model=model, X=X)


@pytest.fixture(scope="session")
def header_model(tmp_path_factory):
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    example = pd.DataFrame({"x": [1.0, 2.0]})
    path = tmp_path_factory.mktemp("models") / "header-model"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(MODELS / "header_model.py"),
        signature=infer_signature(example, np.array(["token", "token"])),
        pip_requirements=pinned_requirements(["mlflow", "scorer-core"]),  # what the model's file imports
    )
    return SimpleNamespace(path=path)


@pytest.fixture(scope="session")
def unsigned_model(tmp_path_factory):
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    path = tmp_path_factory.mktemp("models") / "unsigned"
    model = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))
    mlflow.sklearn.save_model(
        model, str(path), serialization_format="cloudpickle", pip_requirements=SKLEARN_REQUIREMENTS
    )
    return SimpleNamespace(path=path)


@pytest.fixture(scope="session")
def tensor_model(tmp_path_factory):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    model = LinearRegression().fit(X, X.sum(axis=1))
    path = tmp_path_factory.mktemp("models") / "tensor"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        serialization_format="cloudpickle",
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return SimpleNamespace(path=path, model=model)


@pytest.fixture(scope="session")
def example_only_model(tmp_path_factory, iris_classifier):
    """Input signature and example saved, but no output signature: outputs are learnt at load."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    path = tmp_path_factory.mktemp("models") / "example-only"
    X = iris_classifier.X
    mlflow.sklearn.save_model(
        iris_classifier.model,
        str(path),
        signature=infer_signature(X),
        input_example=X.iloc[:2],
        serialization_format="cloudpickle",
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return SimpleNamespace(path=path)


@pytest.fixture(scope="session")
def mixed_model(tmp_path_factory):
    """Two string, one integer and one float input into a logistic regression (directory
    ``credit-mixed``), with the first 25 training rows to send."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "employment": pd.Series(rng.choice(["full-time", "part-time", "retired"], n), dtype=object),
            "region": pd.Series(rng.choice(["north", "south", "east", "west"], n), dtype=object),
            "age": rng.integers(18, 80, n).astype(np.int64),
            "amount": rng.lognormal(8, 0.7, n).round(2),
        }
    )
    target = ((frame["age"] > 45) ^ (frame["employment"] == "retired") ^ (frame["amount"] > 3000)).astype(int)
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["employment", "region"]), remainder="passthrough"
        ),
        LogisticRegression(max_iter=2000),
    ).fit(frame, target)
    path = tmp_path_factory.mktemp("models") / "credit-mixed"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(frame, model.predict(frame)),
        serialization_format="cloudpickle",
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return SimpleNamespace(path=path, model=model, frame=frame.iloc[:25].reset_index(drop=True))
