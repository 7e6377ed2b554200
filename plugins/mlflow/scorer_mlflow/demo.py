"""The iris demo model: a real scikit-learn classifier, trained on the iris data scikit-learn ships.

Built on the machine the first time ``scorer serve`` runs without a model path (no download), and
saved as an MLflow pyfunc model whose outputs follow H2O's classifier layout: the predicted
label, then one probability column per class, ``species.<class>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scorer_core import DemoModel
from scorer_mlflow.classes import class_column
from scorer_mlflow.requirements import pinned_requirements

__all__ = ["IRIS_DEMO", "IRIS_FEATURES", "IRIS_REQUIREMENTS", "build_iris_model"]

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_TARGET = "species"
#: What the demo's model imports when it loads: what MLflow would infer, in a second Python.
IRIS_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy", "scorer-mlflow")


def _python_model() -> Any:
    import mlflow.pyfunc

    class IrisClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        """Label plus per-class probabilities from a scikit-learn classifier."""

        def __init__(self, classifier: Any, classes: list[str]) -> None:
            self.classifier = classifier
            self.classes = classes

        # Left unannotated: MLflow reads predict's type hints as a signature and warns on Any.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import pandas as pd

            probabilities = self.classifier.predict_proba(model_input[list(IRIS_FEATURES)])
            frame = pd.DataFrame(probabilities, columns=[class_column(IRIS_TARGET, c) for c in self.classes])
            frame.insert(0, IRIS_TARGET, [self.classes[i] for i in probabilities.argmax(axis=1)])
            return frame

    return IrisClassifier


def build_iris_model(directory: Path) -> Path:
    """Train a logistic regression on scikit-learn's bundled iris data and save it with MLflow."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    features = pd.DataFrame(iris.data, columns=list(IRIS_FEATURES))
    classes = [str(name) for name in iris.target_names]
    classifier = LogisticRegression(max_iter=1000).fit(features, iris.target)
    model = _python_model()(classifier, classes)
    example = features.iloc[:3]
    signature = infer_signature(example, model.predict(None, example))
    target = directory / "iris-mlflow"
    mlflow.pyfunc.save_model(
        str(target),
        python_model=model,
        signature=signature,
        input_example=example,
        pip_requirements=pinned_requirements(IRIS_REQUIREMENTS),
    )
    return target


IRIS_DEMO = DemoModel(
    name="iris",
    runtime="mlflow-scorer",
    description="logistic regression on scikit-learn's bundled iris data (4 float inputs, 3 classes)",
    build=build_iris_model,
)
