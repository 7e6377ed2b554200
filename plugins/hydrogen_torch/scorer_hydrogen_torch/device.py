"""Which device and backend HT models run on, from ``SCORER_TORCH_DEVICE`` and ``SCORER_TORCH_BACKEND``.

``SCORER_TORCH_DEVICE``: ``auto`` (default: ``cuda`` when torch sees a GPU, else ``cpu``), ``cpu``,
``cuda`` or ``cuda:N``. Asking for CUDA on a machine without it is a start-up error, never a silent
fall-back to CPU. ``SCORER_TORCH_BACKEND``: ``torch`` (default) or ``onnx`` (the model is exported
to ONNX at load time and run by onnxruntime, on its CUDA provider when the device is CUDA).
"""

from __future__ import annotations

from typing import Any

from scorer_core import ConfigurationError
from scorer_hydrogen_torch.settings import BACKENDS, HydrogenTorchSettings

__all__ = ["BACKENDS", "select_backend", "select_device"]


def select_device(setting: str | None = None) -> Any:
    """The ``torch.device`` to load the model on and move each batch to."""
    import torch

    value = HydrogenTorchSettings.load(device=setting).device
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(value)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"SCORER_TORCH_DEVICE='{value}' but torch sees no CUDA device "
                f"(torch {torch.__version__}); use auto or cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigurationError(
                f"SCORER_TORCH_DEVICE='{value}' but only {torch.cuda.device_count()} CUDA devices exist"
            )
    return device


def select_backend(setting: str | None = None) -> str:
    value = HydrogenTorchSettings.load(backend=setting).backend
    if value == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "SCORER_TORCH_BACKEND=onnx needs onnxruntime: pip install 'scorer-hydrogen-torch[onnx]'"
            ) from None
    return value
