"""Saving a torch network as an HT-style MLflow model that ``hydrogen-torch-scorer`` detects.

    from scorer_hydrogen_torch.packaging import save_model
    save_model("my-model", network, task="text_classification", labels=["neg", "pos"],
               encoder={"kind": "text", "vocab": {...}, "max_length": 16})

TorchScript is the default format (``torch.jit.script``; pass ``torchscript="trace"`` to trace
instead): it loads without the network's Python class. ``torchscript=False`` pickles the
``nn.Module`` itself, and ships the file that defines its class with the model (``code_paths``).
"""

from __future__ import annotations

import inspect
import json
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scorer_hydrogen_torch.encoders import make_encoder
from scorer_hydrogen_torch.metadata import METADATA_KEY, OUTPUT_FORMATS
from scorer_hydrogen_torch.torch_model import TorchPyfuncModel

__all__ = ["save_model"]


def save_model(
    path: str | Path,
    network: Any,
    *,
    task: str,
    encoder: Mapping[str, Any],
    labels: Sequence[str] | None = None,
    output_format: str = "legacy_blob",
    torchscript: bool | str = True,
    python_model: TorchPyfuncModel | None = None,
    code_paths: Sequence[str] | None = None,
) -> Path:
    """Write an MLflow pyfunc model at ``path`` whose MLmodel marks it as a Hydrogen Torch model."""
    import mlflow.pyfunc
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}")
    input_encoder = make_encoder(encoder)
    network = network.eval()
    code = list(code_paths or [])
    if python_model is not None and type(python_model) is not TorchPyfuncModel:
        code.append(inspect.getfile(type(python_model)))  # its module must import where it is served
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"
        if torchscript:
            # Released HT models are TorchScript, so this runtime must keep scoring the format even
            # though torch 2.13 deprecates creating it.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
                scripted = (
                    torch.jit.trace(network, (input_encoder.example(),))  # type: ignore[no-untyped-call]
                    if torchscript == "trace"
                    else torch.jit.script(network)
                )
                torch.jit.save(scripted, str(weights))
            model_format = "torchscript"
        else:
            torch.save(network, str(weights))
            code.append(inspect.getfile(type(network)))
            model_format = "module"
        spec = {
            "task": task,
            "labels": list(labels) if labels else None,
            "encoder": dict(encoder),
            "output_format": output_format,
            "format": model_format,
        }
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        kind = encoder["kind"]
        input_type = "double" if kind == "tabular" else "string"
        signature = ModelSignature(
            inputs=Schema([ColSpec(input_type, c) for c in input_encoder.columns]),
            outputs=Schema([ColSpec("string", "output")]),
        )
        mlflow.pyfunc.save_model(
            str(path),
            python_model=python_model or TorchPyfuncModel(),
            artifacts={"model": str(weights), "spec": str(spec_file)},
            signature=signature,
            code_paths=sorted(set(code)) or None,
            metadata={METADATA_KEY: {"task": task, "output_format": output_format}},
        )
    return Path(path)
