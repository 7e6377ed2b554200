"""The model's description as the H2O contract sees it: typed fields, Shapley types, capabilities."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Capabilities", "DataType", "Field", "ModelSchema", "ShapleyType"]


class DataType(str, enum.Enum):
    """Column types of the H2O scoring API (``DataField.dataType``)."""

    BOOL = "Bool"
    INT32 = "Int32"
    INT64 = "Int64"
    FLOAT32 = "Float32"
    FLOAT64 = "Float64"
    STR = "Str"
    TIME64 = "Time64"

    @property
    def is_numeric(self) -> bool:
        return self in _NUMERIC

    @property
    def example(self) -> str:
        """A cell value of this type that passes validation, for ``/model/sample_request``."""
        return _EXAMPLES[self]


_NUMERIC = frozenset({DataType.INT32, DataType.INT64, DataType.FLOAT32, DataType.FLOAT64})
_EXAMPLES = {
    DataType.BOOL: "true",
    DataType.INT32: "0",
    DataType.INT64: "0",
    DataType.FLOAT32: "0",
    DataType.FLOAT64: "0",
    DataType.STR: "text",
    DataType.TIME64: "2018-01-01",
}


class ShapleyType(str, enum.Enum):
    """Kinds of Shapley contributions a request may ask for."""

    ORIGINAL = "ORIGINAL"
    TRANSFORMED = "TRANSFORMED"
    NONE = "NONE"


@dataclass(frozen=True)
class Field:
    """One named, typed column of the model's input or output."""

    name: str
    data_type: DataType

    def to_wire(self) -> dict[str, str]:
        return {"name": self.name, "dataType": self.data_type.value}


@dataclass(frozen=True)
class ModelSchema:
    """Input and output columns, in the order the model declares them.

    ``interval_outputs`` are the bound columns of prediction intervals (``price.lower``,
    ``price.upper``) for a model that lists them in its schema, as H2O's DAI scorer does:
    ``/model/schema`` shows them after ``outputs``, while ``/model/score`` returns them only under
    ``predictionIntervals``, never among the scores.
    """

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    interval_outputs: tuple[Field, ...]

    def __init__(
        self, inputs: Iterable[Field], outputs: Iterable[Field], interval_outputs: Iterable[Field] = ()
    ) -> None:
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "outputs", tuple(outputs))
        object.__setattr__(self, "interval_outputs", tuple(interval_outputs))
        listed = (("input", self.inputs), ("output", (*self.outputs, *self.interval_outputs)))
        for side, fields in listed:
            names = [f.name for f in fields]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"model schema has duplicate {side} fields: {duplicates}")

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    @property
    def interval_output_names(self) -> list[str]:
        return [f.name for f in self.interval_outputs]


@dataclass(frozen=True)
class Capabilities:
    """What the loaded model can do, before operator settings narrow it down.

    ``contributions`` lists the Shapley types the model itself supports; whether each is enabled
    is decided by ``SHAPLEY_ENABLE`` / ``SHAPLEY_TYPES_ENABLED`` (see ``scorer_core.config.shapley``).
    """

    score: bool = True
    prediction_intervals: bool = False
    contributions: frozenset[ShapleyType] = field(default_factory=frozenset)

    def to_wire(self, enabled_contributions: Sequence[ShapleyType]) -> list[str]:
        """The ``/model/capabilities`` array, in the order H2O's Java scorer writes it."""
        wire: list[str] = []
        if self.prediction_intervals:
            wire.append("SCORE_PREDICTION_INTERVAL")
        if self.score:
            wire.append("SCORE")
        for shapley in (ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED):
            if shapley in self.contributions and shapley in enabled_contributions:
                wire.append(f"CONTRIBUTION_{shapley.value}")
        return wire
