"""What a Hydrogen Torch model declares about itself, read from its MLmodel file.

An HT model is an MLflow pyfunc model (HT's runtimes load ``mlflow.pyfunc.model``) whose MLmodel
carries a ``hydrogen_torch`` entry under ``metadata``:

    metadata:
      hydrogen_torch:
        task: text_classification      # decides which blob keys hold one value per row
        output_format: legacy_blob     # or per_row (newer models: one JSON string per row)
        row_keys: [predictions]        # optional; overrides the task's default

``scorer_hydrogen_torch.packaging.save_model`` writes it. The task, never list lengths, decides
which keys are per row: a blob for 3 rows may well carry 3 labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorer_mlflow.mlmodel import mlmodel_file, read_mlmodel

from scorer_core import ConfigurationError

__all__ = [
    "METADATA_KEY",
    "OUTPUT_FORMATS",
    "TASK_ROW_KEYS",
    "HydrogenTorchMetadata",
    "read_mlmodel_metadata",
]

METADATA_KEY = "hydrogen_torch"
OUTPUT_FORMATS = ("legacy_blob", "per_row")
#: Keys of a legacy blob that hold one entry per input row, by HT task; the rest describe the
#: model (``labels``) and are copied to every row.
TASK_ROW_KEYS: Mapping[str, tuple[str, ...]] = {
    "text_classification": ("predictions",),
    "image_classification": ("predictions",),
    "audio_classification": ("predictions",),
    "text_regression": ("predictions",),
    "image_regression": ("predictions",),
    "audio_regression": ("predictions",),
    "tabular_regression": ("predictions",),
    "text_token_classification": ("predictions", "offsets"),
    "image_object_detection": ("predictions", "boxes", "scores"),
}


@dataclass(frozen=True)
class HydrogenTorchMetadata:
    task: str
    output_format: str
    row_keys: tuple[str, ...]

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any], where: str) -> HydrogenTorchMetadata:
        task = str(entry.get("task", ""))
        output_format = str(entry.get("output_format", "legacy_blob"))
        if output_format not in OUTPUT_FORMATS:
            raise ConfigurationError(
                f"{where}: hydrogen_torch.output_format is '{output_format}'; expected one of "
                f"{', '.join(OUTPUT_FORMATS)}"
            )
        declared = entry.get("row_keys")
        if declared is not None:
            row_keys = tuple(str(k) for k in declared)
        elif task in TASK_ROW_KEYS:
            row_keys = TASK_ROW_KEYS[task]
        else:
            raise ConfigurationError(
                f"{where}: hydrogen_torch.task '{task}' is not one this runtime knows "
                f"({', '.join(sorted(TASK_ROW_KEYS))}); declare hydrogen_torch.row_keys, the blob keys "
                "that hold one value per row"
            )
        if not row_keys:
            raise ConfigurationError(f"{where}: hydrogen_torch.row_keys is empty")
        return cls(task, output_format, row_keys)


def read_mlmodel_metadata(path: Path) -> Mapping[str, Any] | None:
    """The ``hydrogen_torch`` entry of ``path``'s MLmodel file, or None (cheap: no MLflow import)."""
    mlmodel = mlmodel_file(path)
    if mlmodel is None:
        return None
    try:
        document = read_mlmodel(mlmodel)
    except ConfigurationError:  # mlflow-scorer's check_model reports a broken file
        return None
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        return None
    entry = metadata[METADATA_KEY]
    if not isinstance(entry, dict):
        raise ConfigurationError(
            f"'{mlmodel}': metadata.{METADATA_KEY} is a {type(entry).__name__}, not a mapping with "
            "task, output_format and row_keys"
        )
    return entry
