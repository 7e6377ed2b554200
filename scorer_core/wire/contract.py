"""Request and response models of the H2O MOJO REST scoring API, written from its OpenAPI 3 definition.

Requests are parsed with these models (pydantic's JSON parser, no intermediate dicts). Responses
are built as plain dicts on the hot path and serialised with orjson; the response models here
exist to describe them in ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scorer_core.errors import InvalidRequest
from scorer_core.schema import DataType, ShapleyType
from scorer_core.wire.cells import echoed
from scorer_core.wire.rows_array import PARSE_CHUNK_BYTES, parse_pieces, split_rows

__all__ = [
    "Cell",
    "ContributionGroupWire",
    "ContributionRequest",
    "ContributionResponse",
    "DataFieldWire",
    "ErrorResponse",
    "ModelSchemaWire",
    "ModelWire",
    "PredictionIntervalWire",
    "ScoreRequest",
    "ScoreResponse",
    "parse_request",
]

#: A request cell: a string per the contract; H2O's Java scorer also accepts numbers and null.
Cell = Union[str, bool, int, float, None]  # noqa: UP007 - pydantic reads the union order
#: The deepest a copied cell may nest: it is written back as JSON (``service.answers``), and orjson
#: writes 254 levels while it reads 1024, so a deeper one would fail once the model had run.
MAX_COPIED_DEPTH = 254
_CONFIG = ConfigDict(extra="ignore", populate_by_name=True)


class ScoreRequest(BaseModel):
    """``POST /model/score`` body."""

    model_config = _CONFIG

    fields: list[str] = Field(
        description="Names of the columns of each row, in order; no duplicates. Extra columns the "
        "model does not use are allowed."
    )
    rows: list[list[Cell]] = Field(
        description="Rows to score; each has one cell (a string) per name in `fields`."
    )
    includeFieldsInOutput: list[str] | None = Field(
        None, description="Input fields copied into each output row, in the order of `fields`."
    )
    noFieldNamesInOutput: bool | None = Field(
        None, description="When true, the response carries no `fields`."
    )
    idField: str | None = Field(
        None,
        description="Row-id field; when absent from `fields` a UUID is generated per row, returned "
        "if the name is also in `includeFieldsInOutput`.",
    )
    requestShapleyValueType: ShapleyType | None = Field(
        None, description="Also return Shapley contributions of this type."
    )
    requestPredictionIntervals: bool | None = Field(
        None, description="Also return prediction intervals (models that have them)."
    )

    @classmethod
    def of_cells(
        cls, fields: list[str], rows: Sequence[Sequence[str]], include: list[str] | None = None
    ) -> ScoreRequest:
        """A request of string cells read by the server itself (a file, not a client's body):
        built without validation, since the cells are strings by construction, and
        ``prepare_score`` makes every check the contract asks of fields and rows. ``rows`` may
        be any sequence of rows (``wire.columns.ColumnRows`` shows columns as rows)."""
        return cls.model_construct(
            fields=fields,
            rows=rows,
            includeFieldsInOutput=include,
            noFieldNamesInOutput=None,
            idField=None,
            requestShapleyValueType=None,
            requestPredictionIntervals=None,
        )


class ContributionRequest(BaseModel):
    """``POST /model/contribution`` body."""

    model_config = _CONFIG

    requestShapleyValueType: ShapleyType
    fields: list[str]
    rows: list[list[Cell]]


class ContributionGroupWire(BaseModel):
    outputGroup: str | None = Field(None, description="Class name, for multiclass models only.")
    contributions: list[list[str]]


class ContributionResponse(BaseModel):
    features: list[str]
    contributionGroups: list[ContributionGroupWire]


class PredictionIntervalWire(BaseModel):
    fields: list[str]
    rows: list[list[str]]


class ScoreResponse(BaseModel):
    id: str
    fields: list[str] | None = Field(None, description="Absent when `noFieldNamesInOutput` is true.")
    score: list[list[str]]
    featureShapleyContributions: ContributionResponse | None = None
    predictionIntervals: PredictionIntervalWire | None = None


class DataFieldWire(BaseModel):
    name: str
    dataType: DataType
    example: str | None = None


class ModelSchemaWire(BaseModel):
    inputFields: list[DataFieldWire]
    outputFields: list[DataFieldWire]
    targetFields: list[DataFieldWire] | None = None


class ModelWire(BaseModel):
    """``GET /model/schema`` body."""

    id: str
    schema_: ModelSchemaWire = Field(alias="schema")
    name: str | None = None
    description: str | None = None


class ErrorResponse(BaseModel):
    detail: str


def parse_request(model: type[ScoreRequest] | type[ContributionRequest], body: bytes) -> Any:
    """Parse and shape-check a request body; any problem is an ``InvalidRequest`` naming it.

    The envelope is validated by the pydantic model. ``rows`` is only checked to be a list of
    lists here: cells are checked once, by the typed column conversion, which names row and field.
    Validating every cell against the ``Cell`` union in pydantic costs four times the JSON parse.
    A large body's rows are parsed in pieces (``wire.rows_array``), to the same result.
    """
    rows: Any
    pieces = _parse_in_pieces(body) if len(body) > PARSE_CHUNK_BYTES else None
    if pieces is not None:
        data, rows = pieces
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            # orjson is strict JSON; H2O's Java scorer also takes NaN and Infinity: retry leniently.
            try:
                return model.model_validate_json(body)
            except ValidationError as exc:
                raise InvalidRequest(_describe(exc)) from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object with 'fields' and 'rows'")
        rows = data.get("rows")
        if isinstance(rows, list):
            for index, row in enumerate(rows):
                if type(row) is not list:
                    raise InvalidRequest(
                        f"row {index} (zero-indexed) must be an array of cells, got {_short(row)}"
                    )
    if isinstance(rows, list):
        data["rows"] = []
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc)) from None
    if isinstance(rows, list):
        request.rows = rows
    if isinstance(request, ScoreRequest):
        _check_copied_cells(request)
    return request


def _check_copied_cells(request: ScoreRequest) -> None:
    """A 400 for a nested cell in a field copied to the output (``includeFieldsInOutput``) that
    could not be written back, naming its row and field, before the model is called. Only the
    copied fields: a nested cell is refused anyway in a field the model reads, and ignored in
    one it neither reads nor copies."""
    include = set(request.includeFieldsInOutput or ())
    copied = [(i, name) for i, name in enumerate(request.fields) if name in include]
    if not copied:
        return
    for index, row in enumerate(request.rows):
        for position, name in copied:
            # Typed as the contract's cells, but the parse leaves nested ones in (``parse_request``).
            cell: Any = row[position] if position < len(row) else None  # a short row: 400 in service.tasks
            if isinstance(cell, (list, dict)):
                try:
                    orjson.dumps(cell)
                except orjson.JSONEncodeError:
                    raise InvalidRequest(
                        f"row {index} (zero-indexed), field {echoed(name)}: the cell nests deeper than "
                        f"{MAX_COPIED_DEPTH} levels, too deep to copy to the output (includeFieldsInOutput)"
                    ) from None


def _parse_in_pieces(body: bytes) -> tuple[dict[str, Any], list[Any]] | None:
    """The envelope and the rows (each checked to be an array, given as a tuple), parsed a piece
    at a time; None when that cannot be shown to give what one parse gives, or when a row is not
    an array (then the body is parsed whole, for the same answer or error)."""
    split = split_rows(body)
    if split is None:
        return None
    rows = parse_pieces(split.rows)
    if rows is None:
        return None
    return split.envelope, rows


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    loc = error["loc"]
    if kind == "json_invalid":
        return f"malformed JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
    if kind == "model_type" or not loc:
        return "the body must be a JSON object with 'fields' and 'rows'"
    head = str(loc[0])
    if kind == "missing" and len(loc) == 1:
        return f"'{head}' is required"
    if head == "rows" and len(loc) >= 3:
        return (
            f"row {loc[1]} (zero-indexed), cell {loc[2]}: expected a string, number, boolean or null, "
            f"got {_short(error.get('input'))}"
        )
    if head == "rows" and len(loc) == 2:
        return f"row {loc[1]} (zero-indexed) must be an array of cells, got {_short(error.get('input'))}"
    if head == "requestShapleyValueType":
        return (
            f"unknown requestShapleyValueType {_short(error.get('input'))}; expected one of "
            f"{', '.join(t.value for t in ShapleyType)}"
        )
    where = head + "".join(f"[{part}]" for part in loc[1:])
    return f"'{where}': {error['msg']}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
