"""scorer_core runtime for Hydrogen Torch models (hydrogen-torch-scorer): torch behind MLflow pyfunc.

It builds on the mlflow plugin: ``HydrogenTorchRuntime`` extends ``scorer_mlflow.MlflowRuntime``.
"""

from __future__ import annotations

from scorer_hydrogen_torch.runtime import HydrogenTorchRuntime
from scorer_hydrogen_torch.settings import HydrogenTorchSettings

__all__ = ["HydrogenTorchRuntime", "HydrogenTorchSettings"]
