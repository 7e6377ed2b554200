"""A scoring task from a request's meaning: its fields, rows and options checked against ``ModelFacts``.

What a request says, not how it was spelt: the HTTP front, the batch jobs (and later fronts)
parse their own bytes into a ``ScoreRequest`` or ``ContributionRequest`` and prepare it here, so
that a row gets the same checks and the same answer whichever way it came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scorer_core.errors import InvalidRequest
from scorer_core.execution.facts import ModelFacts
from scorer_core.frame import Frame
from scorer_core.schema import Field, ShapleyType
from scorer_core.wire.cellrows import KEPT_ROWS, CellRows, Typed
from scorer_core.wire.cells import build_frame, echoed
from scorer_core.wire.columns import ColumnRows
from scorer_core.wire.contract import ContributionRequest, ScoreRequest
from scorer_core.wire.oip import InferRequest, check_outputs, rows_of

__all__ = ["PreparedRequest", "prepare_contribution", "prepare_infer", "prepare_score"]


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request: its rows to score (typed, or cells to be typed with the batch's) and
    how to shape the response."""

    frame: Typed
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
        raise InvalidRequest(f"duplicate fields: {_listed(duplicates)}")
    missing = [spec.name for spec in inputs if spec.name not in seen]
    if missing:
        raise InvalidRequest(f"missing fields required by the model: {', '.join(repr(m) for m in missing)}")
    width = len(fields)
    if isinstance(rows, ColumnRows) and len(rows.columns) == width:
        return  # columns of one table chunk: every row has one cell per column
    for index, row in enumerate(rows):
        if len(row) != width:
            which = "Not enough" if len(row) < width else "Too many"
            raise InvalidRequest(
                f"{which} elements in row {index} (zero-indexed): expected {width} (one per "
                f"field), got {len(row)}"
            )


def prepare_score(
    request: ScoreRequest, facts: ModelFacts, frame: Frame | None = None, *, keep_cells: bool = False
) -> PreparedRequest:
    """Validate a ``/model/score`` request and convert its cells to the model's types.

    ``frame``: the request's rows already converted (by ``scorer_core.wire.fastpath``).
    ``keep_cells``: leave the cells of a request of at most ``KEPT_ROWS`` rows to be typed with
    the rest of their batch (``CellRows``), which costs a small request's event loop far less than
    typing its columns here; a bad cell is then the same 400, from the batch.
    """
    fields = request.fields
    _check_fields(fields, request.rows, facts.schema.inputs)
    include = set(request.includeFieldsInOutput or ())
    id_field = request.idField
    unknown = sorted(name for name in include if name not in fields and name != id_field)
    if unknown:
        raise InvalidRequest(
            f"includeFieldsInOutput names fields not in 'fields': {_listed(unknown)}"
            " (only the idField may be absent, and then it is generated)"
        )
    generated_id = id_field if id_field and id_field in include and id_field not in fields else None
    shapley = request.requestShapleyValueType or ShapleyType.NONE
    facts.shapley.check(shapley, facts.capabilities.contributions)
    intervals = bool(request.requestPredictionIntervals)
    if intervals and not facts.capabilities.prediction_intervals:
        raise InvalidRequest(
            "requestPredictionIntervals is true but the model does not support prediction intervals"
        )
    positions = [i for i, name in enumerate(fields) if name in include]
    columns: Typed
    if frame is not None:
        columns = frame
    elif keep_cells and len(request.rows) <= KEPT_ROWS:
        columns = CellRows.of(fields, request.rows, facts.schema.inputs, facts.missing_values)
    else:
        columns = build_frame(fields, request.rows, facts.schema.inputs, facts.missing_values)
    return PreparedRequest(
        frame=columns,
        rows=request.rows,
        copied_fields=[fields[i] for i in positions],
        copied_positions=positions,
        generated_id=generated_id,
        shapley=shapley,
        intervals=intervals,
        field_names_in_output=not request.noFieldNamesInOutput,
    )


def prepare_contribution(request: ContributionRequest, facts: ModelFacts) -> PreparedRequest:
    """Validate a ``/model/contribution`` request (its Shapley type may not be NONE)."""
    shapley = request.requestShapleyValueType
    if shapley is ShapleyType.NONE:
        raise InvalidRequest(
            "requestShapleyValueType NONE asks for no contributions; use ORIGINAL or TRANSFORMED"
        )
    facts.shapley.check(shapley, facts.capabilities.contributions)
    _check_fields(request.fields, request.rows, facts.schema.inputs)
    return PreparedRequest(
        frame=build_frame(request.fields, request.rows, facts.schema.inputs, facts.missing_values),
        rows=request.rows,
        copied_fields=[],
        copied_positions=[],
        generated_id=None,
        shapley=shapley,
        intervals=False,
        field_names_in_output=True,
    )


def prepare_infer(request: InferRequest, facts: ModelFacts, *, keep_cells: bool) -> PreparedRequest:
    """Validate an Open Inference Protocol request, whichever front (REST or gRPC) parsed it: the
    outputs it names, and its tensors as the model's rows, kept as cells for the batch when
    ``keep_cells`` and few (``wire.oip.rows_of``). It copies no input into its answer and asks for
    outputs only."""
    check_outputs(request, facts.schema.outputs)
    return PreparedRequest(
        frame=rows_of(request, facts.schema.inputs, facts.missing_values, keep_cells=keep_cells),
        rows=[],
        copied_fields=[],
        copied_positions=[],
        generated_id=None,
        shapley=ShapleyType.NONE,
        intervals=False,
        field_names_in_output=True,
    )


#: Names a 400 lists at most: the rest are counted, so that a body of a million bad names does
#: not come back (and into the log) whole.
LISTED_NAMES = 10


def _listed(names: Sequence[str]) -> str:
    """Client-sent names as an error text lists them: each quoted (and cut) as a cell is."""
    shown = ", ".join(echoed(name) for name in names[:LISTED_NAMES])
    return shown if len(names) <= LISTED_NAMES else f"{shown} and {len(names) - LISTED_NAMES:,} more"
