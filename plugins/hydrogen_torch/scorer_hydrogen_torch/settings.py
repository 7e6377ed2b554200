"""hydrogen-torch-scorer's settings: where the network runs, read and checked at start-up.

``SCORER_TORCH_DEVICE``: ``auto`` (default: ``cuda`` when torch sees a GPU, else ``cpu``), ``cpu``,
``cuda`` or ``cuda:N``. ``SCORER_TORCH_BACKEND``: ``torch`` (default) or ``onnx``. Their spelling
is checked before the server listens; whether a CUDA device exists is checked when the model
loads, since only torch can tell.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from scorer_core import EnvSettings

__all__ = ["BACKENDS", "TorchSettings"]

BACKENDS = ("torch", "onnx")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TorchSettings(EnvSettings):
    """The device and backend HT models run on."""

    device: str = Field("auto", validation_alias="SCORER_TORCH_DEVICE")
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA without it stops start-up."""

    backend: str = Field("torch", validation_alias="SCORER_TORCH_BACKEND")
    """``torch``, or ``onnx`` to export the network at load and run it with onnxruntime."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        value = value.strip().lower() or "auto"
        if not _DEVICE.match(value):
            raise ValueError("not a device; use auto, cpu, cuda or cuda:N")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        value = value.strip().lower() or "torch"
        if value not in BACKENDS:
            raise ValueError(f"not one of {', '.join(BACKENDS)}")
        return value
