"""H2O's MOJO REST routes: bytes to the scoring service's tasks, its answers back to bytes.

Only spelling lives here: which path and method, the JSON body parsed into a ``ScoreRequest``,
the ``ScoreResponse`` written as JSON. What a request means (its checks, admission, the deadline,
the model call) is the scoring service's (``scorer_core/service``), shared with the batch jobs and
with any other protocol's front. ``ROUTES`` is the table ``create_app`` builds the app from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from scorer_core.config.settings import Settings
from scorer_core.errors import InvalidRequest, UnsupportedOperation
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringResult
from scorer_core.server.files import ClientFile, open_client_file
from scorer_core.server.front import ROWS_KEY
from scorer_core.server.requests import check_content_type, read_body
from scorer_core.service.answers import contribution_body, encode, score_body
from scorer_core.service.plane import DataPlane
from scorer_core.service.tasks import PreparedRequest, prepare_contribution, prepare_score
from scorer_core.tables.files import ReadLimits, read_table
from scorer_core.wire.collector import release
from scorer_core.wire.contract import (
    ContributionRequest,
    ContributionResponse,
    ErrorResponse,
    ModelWire,
    ScoreRequest,
    ScoreResponse,
    parse_request,
)
from scorer_core.wire.fastpath import native_frame

__all__ = ["OFF_LOOP_BYTES", "ROUTES", "H2OEndpoints", "Route", "json_response"]

#: Bodies from this size on are parsed, and their answers built, in a thread and in chunks, so that
#: the event loop (health probes, other requests) keeps its turn; smaller ones take less than the
#: hand-off would save.
OFF_LOOP_BYTES = 256 * 1024
_JSON = "application/json"


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=_JSON)


def _parse_score(body: bytes, facts: ModelFacts) -> PreparedRequest:
    fast = native_frame(body, facts.schema, facts.missing_values)
    if fast is not None:
        return prepare_score(fast[0], facts, frame=fast[1])
    # A request of few rows has its cells typed with its batch's, off the event loop
    # (wire.cellrows); a large body is parsed in a thread already, and typed there.
    return prepare_score(parse_request(ScoreRequest, body), facts, keep_cells=len(body) < OFF_LOOP_BYTES)


def _parse_contribution(body: bytes, facts: ModelFacts) -> PreparedRequest:
    return prepare_contribution(parse_request(ContributionRequest, body), facts)


#: Answers of more rows than this are written from their columns (``encode``), with no list per
#: row; fewer take one ``orjson.dumps``, which costs a single row less.
WRITTEN_FROM_COLUMNS_ROWS = 64


def _score_json(facts: ModelFacts, prepared: PreparedRequest, result: ScoringResult) -> bytes:
    if prepared.frame.num_rows > WRITTEN_FROM_COLUMNS_ROWS:
        return encode(score_body(facts.model_id, prepared, result, lazy=True))
    return orjson.dumps(score_body(facts.model_id, prepared, result))


def _score_json_in_chunks(facts: ModelFacts, prepared: PreparedRequest, result: ScoringResult) -> bytes:
    shaped = score_body(facts.model_id, prepared, result, lazy=True)
    payload = encode(shaped)
    # Freed here, a chunk at a time, rather than all at once when the request ends.
    release(prepared.rows)
    for column in shaped["score"].columns:
        release(column)
    return payload


def _contribution_json(facts: ModelFacts, prepared: PreparedRequest, result: ScoringResult) -> bytes:
    assert result.contributions is not None
    return orjson.dumps(contribution_body(result.contributions))


def _contribution_json_in_chunks(
    facts: ModelFacts, prepared: PreparedRequest, result: ScoringResult
) -> bytes:
    assert result.contributions is not None
    return encode(contribution_body(result.contributions))


Prepare = Callable[[bytes, ModelFacts], PreparedRequest]
Answer = Callable[[ModelFacts, PreparedRequest, ScoringResult], bytes]


class H2OEndpoints:
    """The H2O routes' endpoints over one data plane."""

    def __init__(self, settings: Settings, plane: DataPlane) -> None:
        self._settings = settings
        self._plane = plane

    async def model_id(self) -> str:
        """The id of the model being served (``MODEL_ID`` overrides it)."""
        return self._plane.facts.model_id

    async def model_schema(self) -> Response:
        """The model's input and output fields with their types."""
        facts = self._plane.facts
        outputs = (*facts.schema.outputs, *facts.schema.interval_outputs)
        return json_response(
            {
                "id": facts.model_id,
                "schema": {
                    "inputFields": [f.to_wire() for f in facts.schema.inputs],
                    "outputFields": [f.to_wire() for f in outputs],
                },
            }
        )

    async def sample_request(self) -> Response:
        """A request that passes validation: every input field and one row of example values."""
        facts = self._plane.facts
        return json_response(
            {"fields": [f.name for f in facts.schema.inputs], "rows": [list(facts.sample_row)]}
        )

    async def capabilities(self) -> Response:
        """What this model can do, narrowed by the Shapley settings."""
        return json_response(self._plane.facts.wire_capabilities)

    async def score(self, request: Request) -> Response:
        """Score the rows in the body."""
        answers = (_score_json, _score_json_in_chunks)
        return await self._post(
            request, _parse_score, outputs=True, answers=answers, endpoint="score", score_body=True
        )

    async def contribution(self, request: Request) -> Response:
        """Shapley contributions of the rows in the body."""
        answers = (_contribution_json, _contribution_json_in_chunks)
        return await self._post(
            request, _parse_contribution, outputs=False, answers=answers, endpoint="contribution"
        )

    async def score_file(self, request: Request, file: str | None = None) -> Response:
        """Score the rows of a CSV, Parquet or JSON Lines file in SCORER_FILE_SCORING_DIR, named
        relative to it; 501 when no directory is configured."""
        settings = self._settings
        if settings.file_scoring_dir is None:
            raise UnsupportedOperation(
                "scoring a file on the server is not enabled (SCORER_FILE_SCORING_DIR); POST the rows "
                "to /model/score"
            )
        if not file:
            raise InvalidRequest("give the file to score: GET /model/score?file=NAME")
        limits = ReadLimits(settings.file_max_rows, settings.file_decoded_bytes)
        self._plane.check_capacity()  # a refusal under overload costs no walk of the directory
        # Opened once, here, and only that descriptor read: a path checked now and opened later
        # could name another file by then (server/files.py).
        directory = settings.file_scoring_dir
        with await _open_off_loop(directory, file, settings.max_request_bytes) as source:
            return await self._score_opened_file(request, source, limits)

    async def media_score(self) -> Response:
        """Not implemented, as in H2O's own scorer."""
        raise UnsupportedOperation("media scoring is not supported by this runtime")

    async def _post(
        self,
        request: Request,
        parse: Prepare,
        *,
        outputs: bool,
        answers: tuple[Answer, Answer],
        endpoint: str,
        score_body: bool = False,
    ) -> Response:
        """A scoring POST: refused at once when full; then a JSON content type, and a body within
        its size and time limits, read before admission so that a slow client never holds a slot.
        ``answers``: the encoding of a small answer, and of a large one (in chunks, in a thread).
        ``score_body``: the body is a score request's, which monitoring may read again."""
        plane = self._plane
        plane.check_capacity()
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, self._settings.max_request_bytes, self._settings.body_timeout)
        off_loop = len(body) >= OFF_LOOP_BYTES
        async with plane.slot() as deadline:
            payload = await plane.score(
                lambda facts: parse(body, facts),
                answers[off_loop],
                deadline=deadline,
                headers=request.headers,
                outputs=outputs,
                off_loop=off_loop,
                rows=_rows_of(request),
                endpoint=endpoint,
                # The data plane keeps it only where the rows were kept as cells (small bodies).
                score_body=body if score_body else None,
            )
        return Response(payload, media_type=_JSON)

    async def _score_opened_file(self, request: Request, source: ClientFile, limits: ReadLimits) -> Response:
        """The rows of a file opened for this request, admitted and scored as a POST of them."""

        def parse(facts: ModelFacts) -> PreparedRequest:
            with source.reading() as handle:
                fields, rows = read_table(handle, source.kind, source.name, limits)
            return prepare_score(ScoreRequest.of_cells(fields, rows), facts)

        plane = self._plane
        plane.check_capacity()
        async with plane.slot() as deadline:
            payload = await plane.score(
                parse,
                _score_json_in_chunks,
                deadline=deadline,
                headers=request.headers,
                outputs=True,
                off_loop=True,
                rows=_rows_of(request),
                endpoint="score_file",
            )
        return Response(payload, media_type=_JSON)


async def _open_off_loop(directory: Path, name: str, max_bytes: int) -> ClientFile:
    """``open_client_file`` in a thread, so that a slow file system never stalls the event loop.
    A request cancelled meanwhile (its client gone) never receives the file: the thread's result
    is closed when it comes, so no descriptor is left open."""
    opening = asyncio.ensure_future(asyncio.to_thread(open_client_file, directory, name, max_bytes))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(opening: asyncio.Future[ClientFile]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _rows_of(request: Request) -> Callable[[int], None]:
    """Where an endpoint records its request's row count: the scope, for the access log and spans."""

    def record(rows: int) -> None:
        request.scope[ROWS_KEY] = rows

    return record


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "Invalid request; the detail names the field or row",
    },
    408: {"model": ErrorResponse, "description": "The body took longer than SCORER_BODY_TIMEOUT"},
    413: {"model": ErrorResponse, "description": "The body is larger than SCORER_MAX_REQUEST_BYTES"},
    415: {"model": ErrorResponse, "description": "The body is not declared as JSON"},
    500: {"model": ErrorResponse, "description": "The model failed"},
    503: {"model": ErrorResponse, "description": "Loading or overloaded; retry"},
}


def _body_schema(name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


@dataclass(frozen=True)
class Route:
    """One path of the app: the endpoint (a method's name) and what FastAPI's route and the
    OpenAPI description say of it."""

    method: str
    path: str
    endpoint: str
    options: dict[str, Any] = field(default_factory=dict)


#: H2O's routes, in the order the OpenAPI description lists them.
ROUTES = (
    Route("GET", "/model/id", "model_id", {"response_class": PlainTextResponse, "tags": ["metadata"]}),
    Route("GET", "/model/schema", "model_schema", {"response_model": ModelWire, "tags": ["metadata"]}),
    Route(
        "GET",
        "/model/sample_request",
        "sample_request",
        {"response_model": ScoreRequest, "tags": ["metadata"]},
    ),
    Route("GET", "/model/capabilities", "capabilities", {"response_model": list[str], "tags": ["metadata"]}),
    Route(
        "POST",
        "/model/score",
        "score",
        {
            "response_model": ScoreResponse,
            "responses": _ERRORS,
            "openapi_extra": _body_schema("ScoreRequest"),
            "tags": ["scoring"],
        },
    ),
    Route(
        "GET",
        "/model/score",
        "score_file",
        {
            "response_model": ScoreResponse,
            "tags": ["scoring"],
            "responses": {
                **_ERRORS,
                501: {"model": ErrorResponse, "description": "SCORER_FILE_SCORING_DIR unset"},
            },
        },
    ),
    Route(
        "POST",
        "/model/contribution",
        "contribution",
        {
            "response_model": ContributionResponse,
            "responses": {**_ERRORS, 501: {"model": ErrorResponse, "description": "No contributions"}},
            "openapi_extra": _body_schema("ContributionRequest"),
            "tags": ["contribution"],
        },
    ),
    Route(
        "POST",
        "/model/media-score",
        "media_score",
        {"tags": ["scoring"], "responses": {501: {"model": ErrorResponse}}},
    ),
)
