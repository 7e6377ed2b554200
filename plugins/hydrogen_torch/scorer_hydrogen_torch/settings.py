"""hydrogen-torch-scorer's settings: where the network runs and how outputs split, checked at start-up.

``SCORER_TORCH_DEVICE``: ``auto`` (default: ``cuda`` when torch sees a GPU, else ``cpu``), ``cpu``,
``cuda`` or ``cuda:N``. ``SCORER_TORCH_BACKEND``: ``torch`` (default) or ``onnx``. Their spelling
is checked before the server listens; whether a CUDA device exists is checked when the model
loads, since only torch can tell.

``SCORER_HT_TASK``, ``SCORER_HT_ROW_KEYS`` and ``SCORER_HT_OUTPUT_FORMAT`` say how to split the
output of a model whose MLmodel carries no ``hydrogen_torch`` metadata (every HT model released so
far): when the metadata is there, it decides.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from scorer_core import EnvSettings
from scorer_hydrogen_torch.metadata import OUTPUT_FORMATS, TASK_ROW_KEYS, HydrogenTorchMetadata

__all__ = ["BACKENDS", "DEFAULT_ROW_KEYS", "HydrogenTorchSettings"]

BACKENDS = ("torch", "onnx")
#: Without metadata or settings: the one key the migration guide names as per-row.
DEFAULT_ROW_KEYS = ("predictions",)
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class HydrogenTorchSettings(EnvSettings):
    """The device and backend HT models run on, and the output rule for models without metadata."""

    device: str = Field("auto", validation_alias="SCORER_TORCH_DEVICE")
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA without it stops start-up."""

    backend: str = Field("torch", validation_alias="SCORER_TORCH_BACKEND")
    """``torch``, or ``onnx`` to export the network at load and run it with onnxruntime."""

    task: str = Field("", validation_alias="SCORER_HT_TASK")
    """The HT task of a model without metadata (``text_classification``, ...): its per-row keys."""

    row_keys: str = Field("", validation_alias="SCORER_HT_ROW_KEYS")
    """Comma-separated blob keys holding one value per row; overrides the task's keys."""

    output_format: str | None = Field(None, validation_alias="SCORER_HT_OUTPUT_FORMAT")
    """``legacy_blob`` (one JSON blob per call, split by row) or ``per_row`` (newer models);
    unset, it is found once at load by scoring the sample row twice."""

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

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        value = value.strip()
        if value and value not in TASK_ROW_KEYS:
            raise ValueError(
                f"not a task this runtime knows ({', '.join(sorted(TASK_ROW_KEYS))}); "
                "set SCORER_HT_ROW_KEYS to the blob keys that hold one value per row instead"
            )
        return value

    @field_validator("row_keys")
    @classmethod
    def _key_list(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",")]
        if value.strip() and not all(keys):
            raise ValueError("expected comma-separated key names, with no empty entry")
        return ",".join(keys) if value.strip() else ""

    @field_validator("output_format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None and value not in OUTPUT_FORMATS:
            raise ValueError(f"not one of {', '.join(OUTPUT_FORMATS)}")
        return value

    @property
    def declares_a_rule(self) -> bool:
        return bool(self.task or self.row_keys or self.output_format)

    def output_rule(self) -> tuple[HydrogenTorchMetadata, str]:
        """The splitting rule for a model without metadata, and a line saying where it came from."""
        if self.row_keys:
            keys = tuple(self.row_keys.split(","))
            source = f"SCORER_HT_ROW_KEYS={self.row_keys}"
        elif self.task:
            keys = TASK_ROW_KEYS[self.task]
            source = f"SCORER_HT_TASK={self.task}"
        else:
            keys = DEFAULT_ROW_KEYS
            source = (
                "the default for models without hydrogen_torch metadata (neither SCORER_HT_TASK nor "
                "SCORER_HT_ROW_KEYS is set)"
            )
        output_format = self.output_format or "legacy_blob"
        metadata = HydrogenTorchMetadata(self.task or "unspecified", output_format, keys)
        return metadata, f"{source}: {describe(metadata)}"


def describe(metadata: HydrogenTorchMetadata) -> str:
    """The rule in words, for the start-up log."""
    if metadata.output_format == "per_row":
        return "the model answers one JSON string per row, passed through unchanged"
    keys = ", ".join(f"'{k}'" for k in metadata.row_keys)
    return f"a legacy blob's {keys} split one entry per row, every other key copied to each row"
