"""Request checks against the model's schema, and row-count validation of what the model returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scorer_core.columns import build_frame
from scorer_core.contract import ContributionRequest, ScoreRequest
from scorer_core.errors import InvalidRequest, ModelError, RowCountMismatch
from scorer_core.frame import Frame
from scorer_core.model import ServedModel
from scorer_core.schema import Field, ShapleyType

__all__ = ["PreparedRequest", "check_columns", "prepare_contribution", "prepare_score"]


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request: the typed frame to score and how to shape the response."""

    frame: Frame
    rows: list[list[Any]]
    copied_fields: list[str]
    copied_positions: list[int]
    generated_id: str | None
    shapley: ShapleyType
    intervals: bool
    field_names_in_output: bool


def _check_fields(fields: Sequence[str], rows: Sequence[Sequence[Any]], inputs: Sequence[Field]) -> None:
    seen: set[str] = set()
    duplicates = sorted({f for f in fields if f in seen or seen.add(f)})  # type: ignore[func-returns-value]
    if duplicates:
        raise InvalidRequest(f"duplicate fields: {', '.join(repr(d) for d in duplicates)}")
    missing = [spec.name for spec in inputs if spec.name not in seen]
    if missing:
        raise InvalidRequest(f"missing fields required by the model: {', '.join(repr(m) for m in missing)}")
    width = len(fields)
    for index, row in enumerate(rows):
        if len(row) != width:
            which = "Not enough" if len(row) < width else "Too many"
            raise InvalidRequest(
                f"{which} elements in row {index} (zero-indexed): expected {width} (one per "
                f"field), got {len(row)}"
            )


def prepare_score(request: ScoreRequest, model: ServedModel, frame: Frame | None = None) -> PreparedRequest:
    """Validate a ``/model/score`` request and convert its cells to the model's types.

    ``frame``: the request's rows already converted (by ``scorer_core.fastpath``).
    """
    fields = request.fields
    _check_fields(fields, request.rows, model.schema.inputs)
    include = set(request.includeFieldsInOutput or ())
    id_field = request.idField
    unknown = sorted(name for name in include if name not in fields and name != id_field)
    if unknown:
        raise InvalidRequest(
            f"includeFieldsInOutput names fields not in 'fields': {', '.join(map(repr, unknown))}"
            " (only the idField may be absent, and then it is generated)"
        )
    generated_id = id_field if id_field and id_field in include and id_field not in fields else None
    shapley = request.requestShapleyValueType or ShapleyType.NONE
    model.shapley.check(shapley, model.capabilities.contributions)
    intervals = bool(request.requestPredictionIntervals)
    if intervals and not model.capabilities.prediction_intervals:
        raise InvalidRequest(
            "requestPredictionIntervals is true but the model does not support prediction intervals"
        )
    positions = [i for i, name in enumerate(fields) if name in include]
    return PreparedRequest(
        frame=frame
        if frame is not None
        else build_frame(fields, request.rows, model.schema.inputs, model.missing_values),
        rows=request.rows,
        copied_fields=[fields[i] for i in positions],
        copied_positions=positions,
        generated_id=generated_id,
        shapley=shapley,
        intervals=intervals,
        field_names_in_output=not request.noFieldNamesInOutput,
    )


def prepare_contribution(request: ContributionRequest, model: ServedModel) -> PreparedRequest:
    """Validate a ``/model/contribution`` request (its Shapley type may not be NONE)."""
    shapley = request.requestShapleyValueType
    if shapley is ShapleyType.NONE:
        raise InvalidRequest(
            "requestShapleyValueType NONE asks for no contributions; use ORIGINAL or TRANSFORMED"
        )
    model.shapley.check(shapley, model.capabilities.contributions)
    _check_fields(request.fields, request.rows, model.schema.inputs)
    return PreparedRequest(
        frame=build_frame(request.fields, request.rows, model.schema.inputs, model.missing_values),
        rows=request.rows,
        copied_fields=[],
        copied_positions=[],
        generated_id=None,
        shapley=shapley,
        intervals=False,
        field_names_in_output=True,
    )


def check_columns(
    runtime: str, what: str, columns: Any, expected_names: Sequence[str] | None, num_rows: int
) -> dict[str, np.ndarray]:
    """Validate a model's output mapping: declared names present, exactly ``num_rows`` per column.

    A wrong row count is a ``RowCountMismatch``, never a silent misalignment.
    """
    if not isinstance(columns, Mapping):
        raise ModelError(
            f"Runtime '{runtime}' returned {type(columns).__name__} for {what}; expected a mapping "
            "of column name to values",
            runtime=runtime,
        )
    names = list(columns) if expected_names is None else list(expected_names)
    checked: dict[str, np.ndarray] = {}
    for name in names:
        if name not in columns:
            raise ModelError(
                f"Runtime '{runtime}' returned no '{name}' column for {what}; it returned "
                f"{sorted(map(str, columns))}",
                runtime=runtime,
            )
        column = columns[name]
        array = column if isinstance(column, np.ndarray) else np.asarray(column, dtype=object)
        length = array.shape[0] if array.ndim else 1
        if length != num_rows or array.ndim != 1:
            raise RowCountMismatch(runtime=runtime, expected=num_rows, actual=length)
        checked[name] = array
    return checked
