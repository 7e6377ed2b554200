"""``dai-mojo-scorer``: Driverless AI MOJO pipelines scored with the ``daimojo`` package."""

from __future__ import annotations

import logging
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
log = logging.getLogger(__name__)


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

    As in H2O's Java DAI scorer, the Shapley types a pipeline supports are detected, and none is
    enabled until ``SHAPLEY_ENABLE`` / ``SHAPLEY_TYPES_ENABLED`` says so. daimojo reads
    contribution names back from the C++ model after each call, so calls are serialized
    (``thread_safe = False``).
    """

    name = "dai-mojo-scorer"
    thread_safe = False

    _model: Any
    _class_outputs: list[str]
    _empty_row: Any

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
        self.model_id = str(model.uuid)
        self.missing_values = frozenset(str(v) for v in model.missing_values)
        # Binomial pipelines explain one class; multiclass ones suffix each column with the class.
        self._class_outputs = list(model.output_names) if len(model.output_names) > 2 else []
        self._empty_row = self._datatable(Frame({f.name: np.array([None], dtype=object) for f in inputs}))
        ops = model.supported_ops
        bounds = self._interval_bounds(outputs) if ops.interval else None
        if bounds is not None:
            # As H2O's DAI scorer lists them: the schema shows the bounds after the prediction.
            self.schema = ModelSchema(inputs, outputs, bounds)
        supported = set()
        if ops.pred_contribs:
            supported.add(ShapleyType.TRANSFORMED)
        if ops.pred_contribs_original:
            supported.add(ShapleyType.ORIGINAL)
        self.capabilities = Capabilities(
            prediction_intervals=bounds is not None, contributions=frozenset(supported)
        )

    def _column_names(self, **options: bool) -> list[str]:
        """The columns ``predict`` returns with these options: from ``model.schema(...)`` when it
        names them, else by scoring one row of missing values."""
        try:
            names = _names_in(self._model.schema(**options))
        except Exception as exc:  # an older runtime, or a form we do not read: ask predict instead
            log.debug("daimojo's schema(%s) gave no names (%s); scoring a row instead", options, exc)
            names = None
        if names is None:
            frame = self._model.predict(self._empty_row, **options)
            names = [str(n) for n in frame.names]
        return names

    def _interval_bounds(self, outputs: Sequence[Field]) -> list[Field] | None:
        """The interval bound fields (``price.lower``, ``price.upper``), or None to serve without."""
        try:
            names = self._column_names(interval=True)
        except Exception as exc:
            log.warning("Prediction intervals are disabled: daimojo could not compute them (%s)", exc)
            return None
        target = {f.name: f for f in outputs}
        bounds = [n for n in names if n not in target and n.endswith(_INTERVAL_SUFFIXES)]
        if not bounds:
            log.warning("Prediction intervals are disabled: daimojo returned no bound columns in %s", names)
            return None
        data_type = outputs[0].data_type if outputs else DataType.FLOAT64
        return [Field(n, data_type) for n in bounds]

    def verify_contributions(self, enabled: frozenset[ShapleyType]) -> frozenset[ShapleyType]:
        """Only the types the operator enabled are checked: each check scores a row (or asks
        daimojo's ``schema()``), and nothing is risked for a type nobody asked for."""
        return frozenset(t for t in enabled if self._explains(t))

    def _explains(self, shapley_type: ShapleyType) -> bool:
        """Whether contributions of this type can be served; a warning says why not.

        Pipelines from before DAI 1.9 refuse contributions, and a multiclass pipeline's columns
        must split into one group per class: either way the pipeline is still served, without
        this type.
        """
        original = shapley_type is ShapleyType.ORIGINAL
        if _before_contributions(str(self._model.dai_version)):
            # daimojo refuses these in predict() (schema() may still name the columns).
            log.warning(
                "Shapley contributions of type %s are disabled for this pipeline: it comes from DAI %s, "
                "and daimojo computes contributions only for pipelines from DAI 1.9.0 or later",
                shapley_type.value,
                self._model.dai_version or "(unknown)",
            )
            return False
        try:
            names = self._column_names(pred_contribs=True, pred_contribs_original=original)
            group_by_class(names, np.zeros((0, len(names))), self._class_outputs)
        except Exception as exc:
            log.warning(
                "Shapley contributions of type %s are disabled for this pipeline: %s", shapley_type.value, exc
            )
            return False
        return True

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


def _names_in(described: Any) -> list[str] | None:
    """Column names in what ``model.schema(...)`` returned, or None when it holds none we can read.

    daimojo 2.9.2 returns a tuple from C++ whose layout its Python code does not show and no
    pipeline here could reveal (it needs a licence). Read, when the types are daimojo's type
    names: a list of ``(name, type)`` pairs, or ``(names, types)``; else a list of names. Anything
    else falls back to scoring a row.
    """
    if not isinstance(described, (tuple, list)) or not described:
        return None
    if all(_strings(pair) and len(pair) == 2 and pair[1] in _TYPES for pair in described):
        return [pair[0] for pair in described]
    if (
        len(described) == 2
        and all(_strings(part) for part in described)
        and len(described[0]) == len(described[1])
        and all(kind in _TYPES for kind in described[1])
    ):
        return list(described[0])
    if all(isinstance(name, str) for name in described) and not any(name in _TYPES for name in described):
        return list(described)
    return None


def _before_contributions(dai_version: str) -> bool:
    """daimojo's own test for pipelines too old for ``pred_contribs`` (before DAI 1.9)."""
    parts = dai_version.split(".")
    try:
        return dai_version == "" or int(parts[0]) < 1 or (int(parts[0]) == 1 and int(parts[1]) < 9)
    except (ValueError, IndexError):
        return True


def _strings(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value)


def _cells(column: np.ndarray) -> list[Any]:
    """A column as datatable takes it: numbers with None for missing, strings or None."""
    cells: list[Any] = column.tolist()
    if column.dtype.kind == "f":
        return [None if v != v else v for v in cells]
    return cells
