"""The Open Inference Protocol's REST routes ("KServe V2"): bytes to the scoring service's tasks.

Only spelling lives here, as in ``h2o_routes``: the tensors of a body parsed (``wire.oip``), the
answer written as output tensors. Admission, the deadline, the batcher (where OIP requests merge
with H2O ones of the same forwarded headers), the model call and its checks are the service's.
Every error body is ``{"error": ...}``, as the protocol says (``app._error_response``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from scorer_core import __version__
from scorer_core.config.settings import Settings
from scorer_core.errors import ScorerError
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringResult
from scorer_core.server.front import ROWS_KEY
from scorer_core.server.h2o_routes import OFF_LOOP_BYTES, Route
from scorer_core.server.requests import OIP_BODY, decoded, read_body
from scorer_core.service.plane import DataPlane
from scorer_core.service.tasks import PreparedRequest, prepare_infer
from scorer_core.wire.cells import echoed
from scorer_core.wire.oip import (
    HEADER_LENGTH,
    InferRequest,
    infer_response,
    parse_infer,
    tensor_metadata,
)

__all__ = [
    "OIP_PATHS",
    "OIP_ROUTES",
    "OIPEndpoints",
    "UnknownModel",
    "check_version",
    "model_metadata",
    "named_model",
]

_JSON = "application/json"
#: What ``GET /v2`` reports as supported beyond the protocol's core.
EXTENSIONS = ["binary_tensor_data"]


class UnknownModel(ScorerError):
    """A path names a model or version this server does not serve."""

    status_code = 404


def _json(body: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=_JSON)


@dataclass
class _Parsed:
    """The request a scoring task was prepared from, kept for its answer."""

    request: InferRequest | None = None


class OIPEndpoints:
    """The protocol's endpoints over one data plane. ``problem`` says why the server is not
    live (``"live"``) or not ready (``"ready"``), or ``None``: the app's own probes decide."""

    def __init__(self, settings: Settings, plane: DataPlane, problem: Callable[[str], str | None]) -> None:
        self._settings = settings
        self._plane = plane
        self._problem = problem

    async def server_metadata(self) -> Response:
        """The server's name, version and protocol extensions."""
        return _json({"name": "scorer_core", "version": __version__, "extensions": EXTENSIONS})

    async def server_live(self) -> Response:
        """200 while a restart would not help (as ``/healthz``); else 503 with the reason."""
        problem = self._problem("live")
        if problem is not None:
            return _json({"live": False, "error": problem}, 503)
        return _json({"live": True})

    async def server_ready(self) -> Response:
        """200 once the model can be called (as ``/readyz``); else 503 with the reason."""
        problem = self._problem("ready")
        if problem is not None:
            return _json({"ready": False, "error": problem}, 503)
        return _json({"ready": True})

    async def model_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        """The model's inputs and outputs as tensors of any number of rows."""
        return _json(model_metadata(self._facts(model_name, model_version)))

    async def model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        """Whether the named model can be called now."""
        problem = self._problem("ready")
        facts = self._facts(model_name, model_version)
        if problem is not None:
            return _json({"name": facts.model_name, "ready": False, "error": problem}, 503)
        return _json({"name": facts.model_name, "ready": True})

    async def infer(self, request: Request, model_name: str, model_version: str | None = None) -> Response:
        """Score the rows the body's tensors hold."""
        plane = self._plane
        plane.check_capacity()
        self._facts(model_name, model_version)
        settings = self._settings
        limit = settings.max_request_bytes
        body = await read_body(request, limit, settings.body_timeout, expected=OIP_BODY)
        body = decoded(body, request.headers.get("content-encoding"), limit)
        header_length = request.headers.get(HEADER_LENGTH)
        off_loop = len(body) >= OFF_LOOP_BYTES
        parsed = _Parsed()

        def prepare(facts: ModelFacts) -> PreparedRequest:
            check_version(facts, model_version)
            infer = parse_infer(body, header_length)
            prepared = prepare_infer(infer, facts, keep_cells=not off_loop)
            # The answer needs the id and the outputs asked for, not the tensors: they go now,
            # not after the batch, so that no collection meanwhile walks them.
            parsed.request = infer._replace(inputs=())
            return prepared

        def answer(
            facts: ModelFacts, prepared: PreparedRequest, result: ScoringResult
        ) -> tuple[bytes, int | None]:
            assert parsed.request is not None and result.outputs is not None
            return infer_response(
                facts.model_name, facts.model_version, parsed.request, facts.schema.outputs, result.outputs
            )

        def rows(count: int) -> None:
            request.scope[ROWS_KEY] = count

        async with plane.slot() as deadline:
            payload, json_length = await plane.score(
                prepare,
                answer,
                deadline=deadline,
                headers=request.headers,
                outputs=True,
                off_loop=off_loop,
                rows=rows,
                endpoint="oip_infer",
            )
        if json_length is None:
            return Response(payload, media_type=_JSON)
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length)},
        )

    def _facts(self, model_name: str, model_version: str | None) -> ModelFacts:
        return named_model(self._plane, model_name, model_version)


def model_metadata(facts: ModelFacts) -> dict[str, Any]:
    """The model's metadata as the protocol describes it, for every front: its name, its one
    version, its runtime as the platform, and its fields as tensors of any number of rows."""
    return {
        "name": facts.model_name,
        "versions": [facts.model_version],
        "platform": facts.runtime,
        "inputs": tensor_metadata(facts.schema.inputs),
        "outputs": tensor_metadata(facts.schema.outputs),
    }


def named_model(plane: DataPlane, model_name: str, model_version: str | None) -> ModelFacts:
    """The served model's facts, when a request names it (503 while it loads, since its name may
    come from it); ``UnknownModel`` (404) when it names another. For every protocol's fronts."""
    facts = plane.facts
    if model_name != facts.model_name:
        raise UnknownModel(
            f"no model named {echoed(model_name)} is served here; "
            f"this server serves {echoed(facts.model_name)}"
        )
    check_version(facts, model_version)
    return facts


def check_version(facts: ModelFacts, model_version: str | None) -> None:
    """``UnknownModel`` (404) when a request names another version than ``facts``'. An infer
    request checks it again against the model that scores it: the model may have been replaced
    since its path was read (``service.replacement``)."""
    if model_version is not None and model_version != facts.model_version:
        raise UnknownModel(
            f"model {echoed(facts.model_name)} has no version {echoed(model_version)}; "
            f"its version is {echoed(facts.model_version)}"
        )


_TAGS = {"tags": ["open inference protocol"]}
_MODEL = "/v2/models/{model_name}"
_VERSION = "/v2/models/{model_name}/versions/{model_version}"

#: The protocol's routes, in the order the OpenAPI description lists them.
OIP_ROUTES = (
    Route("GET", "/v2", "server_metadata", _TAGS),
    Route("GET", "/v2/health/live", "server_live", _TAGS),
    Route("GET", "/v2/health/ready", "server_ready", _TAGS),
    Route("GET", _MODEL, "model_metadata", _TAGS),
    Route("GET", _VERSION, "model_metadata", _TAGS),
    Route("GET", f"{_MODEL}/ready", "model_ready", _TAGS),
    Route("GET", f"{_VERSION}/ready", "model_ready", _TAGS),
    Route("POST", f"{_MODEL}/infer", "infer", _TAGS),
    Route("POST", f"{_VERSION}/infer", "infer", _TAGS),
)

#: Where the protocol's paths begin: errors under it are ``{"error": ...}``, and the credential
#: gate covers the model paths.
OIP_PATHS = "/v2"
