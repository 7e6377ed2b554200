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

from scorer_mlflow.requirements import pinned_requirements

from scorer_hydrogen_torch.encoders import make_encoder
from scorer_hydrogen_torch.metadata import METADATA_KEY, OUTPUT_FORMATS
from scorer_hydrogen_torch.torch_model import TorchPyfuncModel

__all__ = ["TORCH_MODEL_REQUIREMENTS", "save_model"]

#: What ``TorchPyfuncModel`` imports when it loads (what MLflow would otherwise infer, in a second
#: Python that imports torch: half of a save's time), and torch, which MLflow leaves to this
#: plugin's own unpinned dependency.
TORCH_MODEL_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "torch", "scorer-hydrogen-torch")


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
    pip_requirements: Sequence[str] | None = None,
) -> Path:
    """Write an MLflow pyfunc model at ``path`` whose MLmodel marks it as a Hydrogen Torch model.

    ``pip_requirements``: the model's, as MLflow takes them. By default a TorchScript network
    served by this plugin's own ``TorchPyfuncModel`` gets ``TORCH_MODEL_REQUIREMENTS`` pinned to
    the installed versions (torch among them: the weights were written by that version); another
    ``python_model``, or a pickled network, gets what MLflow infers from what it imports when
    loaded.
    """
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
            pip_requirements=_requirements(pip_requirements, python_model, model_format),
        )
    return Path(path)


def _requirements(
    given: Sequence[str] | None, python_model: TorchPyfuncModel | None, model_format: str
) -> list[str] | None:
    """The requirements to write; None to have MLflow infer them."""
    if given is not None:
        return list(given)
    if (python_model is None or type(python_model) is TorchPyfuncModel) and model_format == "torchscript":
        return pinned_requirements(TORCH_MODEL_REQUIREMENTS)
    # A python_model of the caller's, or a pickled network whose module ships with the model, may
    # import anything: MLflow loads the model to see what.
    return None
