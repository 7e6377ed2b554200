"""Request preparation: the body read within limits, parsed, and checked against the model's facts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from scorer_core.errors import InvalidRequest
from scorer_core.execution.facts import ModelFacts
from scorer_core.frame import Frame
from scorer_core.schema import Field, ShapleyType
from scorer_core.wire.cells import build_frame
from scorer_core.wire.contract import ContributionRequest, ScoreRequest

__all__ = [
    "BodyTimeout",
    "BodyTooLarge",
    "PreparedRequest",
    "UnsupportedMediaType",
    "check_content_type",
    "prepare_contribution",
    "prepare_score",
    "read_body",
]


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


def prepare_score(request: ScoreRequest, facts: ModelFacts, frame: Frame | None = None) -> PreparedRequest:
    """Validate a ``/model/score`` request and convert its cells to the model's types.

    ``frame``: the request's rows already converted (by ``scorer_core.wire.fastpath``).
    """
    fields = request.fields
    _check_fields(fields, request.rows, facts.schema.inputs)
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
    facts.shapley.check(shapley, facts.capabilities.contributions)
    intervals = bool(request.requestPredictionIntervals)
    if intervals and not facts.capabilities.prediction_intervals:
        raise InvalidRequest(
            "requestPredictionIntervals is true but the model does not support prediction intervals"
        )
    positions = [i for i, name in enumerate(fields) if name in include]
    return PreparedRequest(
        frame=frame
        if frame is not None
        else build_frame(fields, request.rows, facts.schema.inputs, facts.missing_values),
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


#: Media types a scoring POST may declare. A missing Content-Type is accepted, as H2O's clients
#: have not always sent one; any other type is refused with 415 before the body is read.
_JSON_TYPES = ("application/json",)


def check_content_type(content_type: str | None) -> None:
    """Raise ``UnsupportedMediaType`` (415) unless the body is declared JSON or not declared."""
    if content_type is None or not content_type.strip():
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _JSON_TYPES or (media_type.startswith("application/") and media_type.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"Content-Type '{media_type}' is not supported; send the body as application/json"
    )


class UnsupportedMediaType(InvalidRequest):
    """415: the body is declared as something other than JSON (a form, a file)."""

    status_code = 415


class BodyTooLarge(InvalidRequest):
    """413: the body is larger than ``SCORER_MAX_REQUEST_BYTES``; the connection is closed."""

    status_code = 413
    close_connection = True

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes (SCORER_MAX_REQUEST_BYTES)")


class BodyTimeout(InvalidRequest):
    """408: the body did not arrive within ``SCORER_BODY_TIMEOUT``; the connection is closed."""

    status_code = 408
    close_connection = True

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the request body did not arrive within {timeout:g} s (SCORER_BODY_TIMEOUT); send it faster"
        )


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, read as it streams in: 413 as soon as it passes ``limit`` bytes (never
    buffered whole first, chunked or not), 408 when it takes longer than ``timeout``, 400 when
    empty."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    try:
        body = await asyncio.wait_for(_read_within(request, limit), timeout)
    except TimeoutError:
        raise BodyTimeout(timeout) from None
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object with 'fields' and 'rows'")
    return body


async def _read_within(request: Request, limit: int) -> bytes:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise BodyTooLarge(limit)
    return bytes(received)
