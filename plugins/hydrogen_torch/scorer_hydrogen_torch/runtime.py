"""``hydrogen-torch-scorer``: HT models (MLflow pyfunc + torch) with runtime 2.0's output splitting."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scorer_mlflow.runtime import MlflowRuntime

from scorer_core import DataType, Field, Frame, Outputs
from scorer_hydrogen_torch.metadata import HydrogenTorchMetadata, read_mlmodel_metadata
from scorer_hydrogen_torch.settings import HydrogenTorchSettings, describe
from scorer_hydrogen_torch.splitting import OUTPUT_FIELD, split_rows

__all__ = ["OUTPUT_FIELD", "HydrogenTorchRuntime"]

log = logging.getLogger(__name__)


class HydrogenTorchRuntime(MlflowRuntime):
    """An MLflow pyfunc model served as Hydrogen Torch's runtime 2.0 serves it.

    Detected when its MLmodel carries ``metadata.hydrogen_torch`` (see metadata.py); chosen with
    ``--runtime hydrogen-torch-scorer``, any pyfunc model is served, as HT's released models carry
    no such metadata (the output rule then comes from the settings). Its one output field,
    ``output``, holds one JSON string per input row: a legacy whole-batch
    blob is split by the rules in splitting.py, so merged batches split back by row offset and
    row counts can be validated. It claims HT models ahead of ``mlflow-scorer``
    (``detection_priority``), which would otherwise serve the blob unsplit.
    """

    name = "hydrogen-torch-scorer"
    detection_priority = 10
    #: Measured (README, two runs): in-process is level or ahead on throughput and faster for a lone
    #: request; one worker has a lower p99 under load. In-process also keeps one CUDA context.
    preferred_batch_workers = 0

    metadata: HydrogenTorchMetadata
    #: Where the network runs, for models built on TorchPyfuncModel (None for other model code).
    device: Any = None
    backend: str | None = None

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return super().can_load(path) and read_mlmodel_metadata(path) is not None

    @classmethod
    def check_model(cls, path: Path) -> None:
        super().check_model(path)
        # The settings, and the model's metadata when it has some: both before the server listens.
        output_rule(read_mlmodel_metadata(path), HydrogenTorchSettings.load(), path)

    @classmethod
    def preload_modules(cls, path: Path) -> list[str]:
        # The network's own module is imported by every load, torch with it.
        return [*super().preload_modules(path), "scorer_hydrogen_torch.torch_model"]

    def load(self, path: Path) -> None:
        settings = HydrogenTorchSettings.load()
        entry = read_mlmodel_metadata(path)
        self.metadata, rule = output_rule(entry, settings, path)
        log.info("Hydrogen Torch output rule: %s", rule)
        if entry is not None and settings.declares_a_rule:
            log.warning(
                "SCORER_HT_TASK / SCORER_HT_ROW_KEYS / SCORER_HT_OUTPUT_FORMAT are ignored: the model's "
                "MLmodel declares metadata.hydrogen_torch, which decides"
            )
        # A bad SCORER_TORCH_DEVICE or _BACKEND raises ConfigurationError from the model code's
        # load_context, which MLflow passes on unchanged: a clear start-up error.
        super().load(path)
        from scorer_hydrogen_torch.torch_model import TorchPyfuncModel  # imports mlflow and torch

        model_code = self._pyfunc.unwrap_python_model()
        if isinstance(model_code, TorchPyfuncModel):
            self.device, self.backend = model_code.device, model_code.backend
            cells = model_code.encoder.sample_cells()
            self.sample_row = tuple(cells.get(f.name, f.data_type.example) for f in self.schema.inputs)
        if entry is None and settings.output_format is None:
            self._detect_output_format()

    def _detect_output_format(self) -> None:
        """Score the sample row as two rows: two strings back is a per-row model, one a legacy blob.

        Decided once, so that a one-row request gets the same treatment alone or merged into a
        batch. Only for models without metadata or ``SCORER_HT_OUTPUT_FORMAT``.
        """
        import pandas as pd

        from scorer_hydrogen_torch.splitting import output_cells

        row = [
            _typed(cell, f.data_type)
            for cell, f in zip(self.example_row(), self.schema.inputs, strict=True)
        ]
        try:
            cells = output_cells(
                self._pyfunc.predict(pd.DataFrame([row, row], columns=self.schema.input_names))
            )
        except Exception as exc:
            log.warning(
                "Could not tell whether this model answers per row (%s: %s); treating its output as a "
                "legacy blob. Set SCORER_HT_OUTPUT_FORMAT to say which",
                type(exc).__name__,
                exc,
            )
            return
        found = "per_row" if len(cells) == 2 else "legacy_blob"
        if len(cells) not in (1, 2):
            log.warning(
                "The model answered %d outputs for 2 rows; treating them as a legacy blob", len(cells)
            )
        self.metadata = dataclasses.replace(self.metadata, output_format=found)
        log.info("Hydrogen Torch output format, found by scoring the sample row twice: %s", found)


    def declared_outputs(self, model_dir: str) -> list[Field]:
        return [Field(OUTPUT_FIELD, DataType.STR)]

    def score(self, batch: Frame) -> Outputs:
        rows = split_rows(self.predict(batch), batch.num_rows, self.metadata)
        return {OUTPUT_FIELD: np.asarray(rows, dtype=object)}


def _typed(cell: str, data_type: DataType) -> object:
    """A sample cell as the pyfunc's signature expects it (the core types real requests)."""
    if data_type in (DataType.FLOAT32, DataType.FLOAT64):
        return float(cell)
    if data_type in (DataType.INT32, DataType.INT64):
        return int(cell)
    if data_type is DataType.BOOL:
        return cell.strip().lower() == "true"
    return cell


def output_rule(
    entry: Mapping[str, Any] | None, settings: HydrogenTorchSettings, path: Path
) -> tuple[HydrogenTorchMetadata, str]:
    """How outputs split, and a line saying why: the model's metadata when it has some (``entry``),
    else the settings. Released HT models carry no metadata; chosen with ``--runtime
    hydrogen-torch-scorer`` they split by ``SCORER_HT_TASK`` / ``SCORER_HT_ROW_KEYS``, or on
    ``predictions`` by default."""
    if entry is None:
        return settings.output_rule()
    metadata = HydrogenTorchMetadata.from_mapping(entry, str(path))
    return metadata, f"the model's metadata.hydrogen_torch (task {metadata.task}): {describe(metadata)}"
