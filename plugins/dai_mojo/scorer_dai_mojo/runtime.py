"""``dai-mojo-scorer``: Driverless AI MOJO pipelines scored with the ``daimojo`` package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorer_core import (
    Capabilities,
    ConfigurationError,
    Contributions,
    DataType,
    Field,
    Frame,
    ModelError,
    ModelSchema,
    Outputs,
    Runtime,
    ShapleyType,
)
from scorer_core.contributions import group_by_class
from scorer_dai_mojo.settings import LICENCE_HELP, DaiSettings

__all__ = ["DaiMojoRuntime", "pipeline_file"]

PIPELINE_FILE = "pipeline.mojo"
_LICENCE_ERROR = "Driverless AI license error!"
# daimojo's type names (model.feature_types / output_types) and the H2O contract's.
_TYPES = {
    "bool": DataType.BOOL,
    "int32": DataType.INT32,
    "int64": DataType.INT64,
    "float32": DataType.FLOAT32,
    "float64": DataType.FLOAT64,
    "string": DataType.STR,
}
_INTERVAL_SUFFIXES = (".lower", ".upper")


def pipeline_file(path: Path) -> Path | None:
    """The ``pipeline.mojo`` that ``path`` names: the file, or the one in a ``mojo-pipeline`` directory."""
    if path.is_dir():
        candidate = path / PIPELINE_FILE
        return candidate if candidate.is_file() else None
    return path if path.is_file() and path.name == PIPELINE_FILE else None


def _fields(names: Sequence[str], types: Sequence[str], side: str) -> list[Field]:
    fields = []
    for name, kind in zip(names, types, strict=True):
        if kind not in _TYPES:
            raise ConfigurationError(
                f"The pipeline's {side} '{name}' has type '{kind}', which daimojo does not score"
            )
        fields.append(Field(name, _TYPES[kind]))
    return fields


class DaiMojoRuntime(Runtime):
    """Scores a DAI MOJO pipeline; Shapley types and intervals are what the pipeline supports.

    As in H2O's MOJO scorer, contributions are auto-detected: both types are enabled unless
    ``SHAPLEY_ENABLE`` / ``SHAPLEY_TYPES_ENABLED`` narrow them. daimojo reads contribution names
    back from the C++ model after each call, so calls are serialized (``thread_safe = False``).
    """

    name = "dai-mojo-scorer"
    default_shapley_types = frozenset({ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED})
    thread_safe = False

    _model: Any
    _class_outputs: list[str]

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return pipeline_file(path) is not None

    @classmethod
    def check_model(cls, path: Path) -> None:
        """A pipeline file, and a licence daimojo will find: both before the server listens."""
        cls._pipeline(path)
        DaiSettings.load().licence_source()

    @staticmethod
    def _pipeline(path: Path) -> Path:
        mojo = pipeline_file(path)
        if mojo is None:
            raise ConfigurationError(
                f"'{path}' is not a Driverless AI MOJO pipeline: expected a {PIPELINE_FILE} file or "
                f"a directory holding one (mojo-pipeline/)"
            )
        return mojo

    def load(self, path: Path) -> None:
        mojo = self._pipeline(path)
        source = DaiSettings.load().licence_source()
        import daimojo

        try:
            model = daimojo.model(str(mojo))
        except RuntimeError as exc:
            if _LICENCE_ERROR in str(exc):
                raise ConfigurationError(
                    f"daimojo rejected the Driverless AI licence from {source}; {LICENCE_HELP}"
                ) from exc
            raise ConfigurationError(f"daimojo cannot load '{mojo}': {exc}") from exc
        self._model = model
        inputs = _fields(model.feature_names, model.feature_types, "input")
        outputs = _fields(model.output_names, model.output_types, "output")
        self.schema = ModelSchema(inputs, outputs)
        # Binomial pipelines explain one class; multiclass ones suffix each column with the class.
        self._class_outputs = list(model.output_names) if len(model.output_names) > 2 else []
        ops = model.supported_ops
        supported = set()
        if ops.pred_contribs:
            supported.add(ShapleyType.TRANSFORMED)
        if ops.pred_contribs_original:
            supported.add(ShapleyType.ORIGINAL)
        self.capabilities = Capabilities(
            prediction_intervals=bool(ops.interval), contributions=frozenset(supported)
        )
        self.model_id = str(model.uuid)
        self.missing_values = frozenset(str(v) for v in model.missing_values)
        # Score a row of missing values once per type, so that a pipeline whose contribution
        # columns do not split by class fails here rather than on a request.
        empty_row = self._datatable(Frame({f.name: np.array([None], dtype=object) for f in inputs}))
        for shapley_type in supported:
            names = list(self._predict(empty_row, shapley_type=shapley_type).names)
            group_by_class(names, np.zeros((0, len(names))), self._class_outputs)

    def score(self, batch: Frame) -> Outputs:
        return self._columns(self._predict(self._datatable(batch)))

    def score_with_intervals(self, batch: Frame) -> tuple[Outputs, Outputs]:
        columns = self._columns(self._predict(self._datatable(batch), interval=True))
        bounds = {n: v for n, v in columns.items() if n.endswith(_INTERVAL_SUFFIXES)}
        return {n: v for n, v in columns.items() if n not in bounds}, bounds

    def contributions(self, batch: Frame, shapley_type: ShapleyType) -> Contributions:
        frame = self._predict(self._datatable(batch), shapley_type=shapley_type)
        values = np.column_stack([np.asarray(c, dtype=np.float64) for c in frame.to_list()])
        return group_by_class(list(frame.names), values, self._class_outputs)

    def _datatable(self, batch: Frame) -> Any:
        import datatable

        return datatable.Frame({f.name: _cells(batch[f.name]) for f in self.schema.inputs})

    def _predict(self, frame: Any, *, interval: bool = False, shapley_type: ShapleyType | None = None) -> Any:
        try:
            return self._model.predict(
                frame,
                pred_contribs=shapley_type is not None,
                pred_contribs_original=shapley_type is ShapleyType.ORIGINAL,
                interval=interval,
            )
        except RuntimeError as exc:
            raise ModelError(f"daimojo failed: {exc}", runtime=self.name) from exc

    @staticmethod
    def _columns(frame: Any) -> dict[str, np.ndarray]:
        return {name: np.asarray(values) for name, values in zip(frame.names, frame.to_list(), strict=True)}


def _cells(column: np.ndarray) -> list[Any]:
    """A column as datatable takes it: numbers with None for missing, strings or None."""
    cells: list[Any] = column.tolist()
    if column.dtype.kind == "f":
        return [None if v != v else v for v in cells]
    return cells
