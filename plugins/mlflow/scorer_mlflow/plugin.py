"""Hook implementations registering the MLflow runtime and its iris demo model."""

from __future__ import annotations

from scorer_core import DemoModel, Runtime, hookimpl
from scorer_mlflow.demo import IRIS_DEMO
from scorer_mlflow.runtime import MlflowRuntime


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [MlflowRuntime]


@hookimpl
def scorer_register_demo_models() -> list[DemoModel]:
    return [IRIS_DEMO]
