"""The HTTP front: H2O's MOJO REST scoring API on FastAPI, plus liveness and readiness probes."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from scorer_core.contract import (
    ContributionRequest,
    ContributionResponse,
    ErrorResponse,
    ModelWire,
    ScoreRequest,
    ScoreResponse,
    parse_request,
)
from scorer_core.dispatch import Dispatcher
from scorer_core.errors import (
    ConfigurationError,
    InvalidRequest,
    ModelError,
    NotReady,
    Overloaded,
    ScorerError,
    UnsupportedOperation,
)
from scorer_core.fastpath import numeric_frame
from scorer_core.model import ServedModel
from scorer_core.response import contribution_body, score_body
from scorer_core.scoring import ScoringTask
from scorer_core.settings import Settings
from scorer_core.validation import PreparedRequest, prepare_contribution, prepare_score

__all__ = ["ModelHost", "PathPrefixMiddleware", "create_app"]

log = logging.getLogger(__name__)

#: Paths served both at the root and under one leading segment (H2O MLOps's deployment id).
_PREFIXABLE = ("/model/", "/readyz", "/healthz", "/openapi.json", "/docs")


class ModelHost:
    """Holds the served model: loading in the background, then ready, or failed."""

    def __init__(
        self,
        loader: Callable[[], ServedModel] | None = None,
        *,
        model: ServedModel | None = None,
    ) -> None:
        if (loader is None) == (model is None):
            raise ValueError("give exactly one of loader and model")
        self._loader = loader
        self._model = model
        self.error: BaseException | None = None
        self.loaded = threading.Event()
        if model is not None:
            self.loaded.set()

    @property
    def model(self) -> ServedModel:
        if self._model is None:
            if self.error is not None:
                raise NotReady(f"the model failed to load: {self.error}")
            raise NotReady("the model is still loading; retry shortly")
        return self._model

    @property
    def ready(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Run the loader (in the calling thread); record the model or the error."""
        assert self._loader is not None
        try:
            self._model = self._loader()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.loaded.set()


class PathPrefixMiddleware:
    """Serve ``/<deployment-id>/model/score`` as ``/model/score``, as H2O MLOps clients expect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.startswith(_PREFIXABLE):
                second = path.find("/", 1)
                if second > 0 and path[second:].startswith(_PREFIXABLE):
                    scope = dict(scope)
                    scope["path"] = path[second:]
                    scope["raw_path"] = path[second:].encode()
        await self.app(scope, receive, send)


def _task(request: Request, model: ServedModel, prepared: PreparedRequest, *, outputs: bool) -> ScoringTask:
    """The model work for a validated request, with the headers it may forward."""
    return ScoringTask(
        prepared.frame,
        model.forwarding.select(request.headers),
        outputs=outputs,
        shapley=prepared.shapley,
        intervals=prepared.intervals,
    )


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _error_response(exc: ScorerError) -> Response:
    response = _json({"detail": exc.detail}, exc.status_code)
    if isinstance(exc, Overloaded):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    body = await request.body()
    if len(body) > limit:
        raise _TooLarge(limit)
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object with 'fields' and 'rows'")
    return body


class _TooLarge(InvalidRequest):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes (SCORER_MAX_REQUEST_BYTES)")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "Invalid request; the detail names the field or row",
    },
    500: {"model": ErrorResponse, "description": "The model failed"},
    503: {"model": ErrorResponse, "description": "Loading or overloaded; retry"},
}


def _body_schema(name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def create_app(
    settings: Settings, host: ModelHost, *, on_load_failure: Callable[[], None] | None = None
) -> FastAPI:
    """The ASGI app serving ``host``'s model. Starts loading it (if not loaded) at start-up."""
    state: dict[str, Any] = {}

    def dispatcher() -> Dispatcher:
        model = host.model
        current = state.get("dispatcher")
        if current is None:
            current = state["dispatcher"] = Dispatcher(model, settings)
        return current

    def load_in_background() -> None:
        try:
            host.load()
        except BaseException as exc:
            if isinstance(exc, ConfigurationError):
                # The operator's to fix, and the message says how: a traceback would bury it.
                log.error("Model failed to load; the server will stop: %s", exc)
            else:
                log.exception("Model failed to load; the server will stop")
            if on_load_failure is not None:
                on_load_failure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not host.loaded.is_set():
            threading.Thread(target=load_in_background, name="model-loader", daemon=True).start()
        yield
        current = state.pop("dispatcher", None)
        if current is not None:
            await current.close()
        if host.ready:
            host.model.close()

    app = FastAPI(
        title="scorer_core scoring API",
        version="1.2.0",
        description="H2O MOJO REST scoring API (v1.2.0-openapi3), served by scorer_core.",
        lifespan=lifespan,
        redoc_url=None,
    )

    @app.exception_handler(ScorerError)
    async def scorer_error(request: Request, exc: ScorerError) -> Response:
        if isinstance(exc, ModelError):
            log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
        return _error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        return _json({"detail": f"Failed scoring request due to: {type(exc).__name__}: {exc}"}, 500)

    @app.get("/healthz", response_class=PlainTextResponse, tags=["health"])
    async def healthz() -> str:
        """Liveness: the process is up and serving HTTP (the model may still be loading)."""
        return "OK"

    @app.get("/readyz", response_class=PlainTextResponse, tags=["health"], responses={500: {}})
    async def readyz() -> Response:
        """Readiness: 200 ``Ready`` once the model has loaded, 500 ``Not ready`` before."""
        if host.ready:
            return PlainTextResponse("Ready")
        return PlainTextResponse("Not ready", status_code=500)

    @app.get("/model/id", response_class=PlainTextResponse, tags=["metadata"])
    async def model_id() -> str:
        """The id of the model being served (``MODEL_ID`` overrides it)."""
        return host.model.model_id

    @app.get("/model/schema", response_model=ModelWire, tags=["metadata"])
    async def model_schema() -> Response:
        """The model's input and output fields with their types."""
        model = host.model
        return _json(
            {
                "id": model.model_id,
                "schema": {
                    "inputFields": [f.to_wire() for f in model.schema.inputs],
                    "outputFields": [f.to_wire() for f in model.schema.outputs],
                },
            }
        )

    @app.get("/model/sample_request", response_model=ScoreRequest, tags=["metadata"])
    async def sample_request() -> Response:
        """A request that passes validation: every input field and one row of example values."""
        inputs = host.model.schema.inputs
        row = host.model.runtime.sample_row or tuple(f.data_type.example for f in inputs)
        return _json({"fields": [f.name for f in inputs], "rows": [list(row)]})

    @app.get("/model/capabilities", response_model=list[str], tags=["metadata"])
    async def capabilities() -> Response:
        """What this model can do, narrowed by the Shapley settings."""
        return _json(host.model.wire_capabilities)

    @app.post(
        "/model/score",
        response_model=ScoreResponse,
        responses=_ERRORS,
        openapi_extra=_body_schema("ScoreRequest"),
        tags=["scoring"],
    )
    async def score(request: Request) -> Response:
        """Score the rows in the body."""
        model = host.model
        scoring = dispatcher()
        async with scoring.admission.admit():
            body = await _read_body(request, settings.max_request_bytes)
            fast = numeric_frame(body, model)
            if fast is not None:
                prepared = prepare_score(fast[0], model, frame=fast[1])
            else:
                prepared = prepare_score(parse_request(ScoreRequest, body), model)
            result = await scoring.score(_task(request, model, prepared, outputs=True))
            return _json(score_body(model.model_id, prepared, result))

    @app.get("/model/score", tags=["scoring"], responses={501: {"model": ErrorResponse}})
    async def score_file() -> Response:
        """Scoring a file on the server is not offered: POST the rows instead."""
        raise UnsupportedOperation(
            "scoring a file on the server is not supported by this runtime; POST the rows to /model/score"
        )

    @app.post(
        "/model/contribution",
        response_model=ContributionResponse,
        responses={**_ERRORS, 501: {"model": ErrorResponse, "description": "No contributions"}},
        openapi_extra=_body_schema("ContributionRequest"),
        tags=["contribution"],
    )
    async def contribution(request: Request) -> Response:
        """Shapley contributions of the rows in the body."""
        model = host.model
        scoring = dispatcher()
        async with scoring.admission.admit():
            body = await _read_body(request, settings.max_request_bytes)
            prepared = prepare_contribution(parse_request(ContributionRequest, body), model)
            result = await scoring.score(_task(request, model, prepared, outputs=False))
            assert result.contributions is not None
            return _json(contribution_body(result.contributions))

    @app.post("/model/media-score", tags=["scoring"], responses={501: {"model": ErrorResponse}})
    async def media_score() -> Response:
        """Not implemented, as in H2O's own scorer."""
        raise UnsupportedOperation("media scoring is not supported by this runtime")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _, defs = models_json_schema(
                [(ScoreRequest, "validation"), (ContributionRequest, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in defs.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(PathPrefixMiddleware)
    return app
