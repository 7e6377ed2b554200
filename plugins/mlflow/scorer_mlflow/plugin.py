"""Hook implementations registering the MLflow runtime, its iris demo model, and the fetching of
``models:/`` and ``runs:/`` URIs from an MLflow tracking server."""

from __future__ import annotations

from pathlib import Path

from scorer_core import DemoModel, Runtime, hookimpl
from scorer_mlflow.demo import IRIS_DEMO
from scorer_mlflow.runtime import MlflowRuntime
from scorer_mlflow.uris import fetch_model


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [MlflowRuntime]


@hookimpl
def scorer_register_demo_models() -> list[DemoModel]:
    return [IRIS_DEMO]


@hookimpl
def scorer_resolve_model_uri(uri: str, directory: Path) -> Path | None:
    return fetch_model(uri, directory)
