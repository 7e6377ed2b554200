"""scorer_core runtime for MLflow pyfunc models (``mlflow-scorer``)."""

from __future__ import annotations

from scorer_mlflow.runtime import MlflowRuntime

__all__ = ["MlflowRuntime"]
