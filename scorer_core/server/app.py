"""The HTTP front: H2O's MOJO REST scoring API on FastAPI, plus liveness and readiness probes."""

from __future__ import annotations

import gc
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from scorer_core.config.settings import Settings
from scorer_core.errors import (
    ConfigurationError,
    InvalidRequest,
    ModelError,
    NotReady,
    Overloaded,
    ScorerError,
    UnsupportedOperation,
)
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringTask
from scorer_core.server.auth import Authenticator
from scorer_core.server.dispatch import Dispatcher
from scorer_core.server.files import ClientFile, open_client_file
from scorer_core.server.front import DOCS_ASSETS, ROWS_KEY, ScorerApp
from scorer_core.server.host import ModelHost
from scorer_core.server.metrics import CONTENT_TYPE, ScorerMetrics
from scorer_core.server.requests import (
    PreparedRequest,
    check_content_type,
    prepare_contribution,
    prepare_score,
    read_body,
)
from scorer_core.server.responses import contribution_body, encode, score_body
from scorer_core.server.tracing import Tracing
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
from scorer_core.wire.fastpath import numeric_frame
from scorer_core.wire.tables import ReadLimits, read_table

__all__ = ["DOCS_ASSETS", "create_app"]

log = logging.getLogger(__name__)

#: Bodies from this size on are parsed, and their answers built, in a thread and in chunks, so that
#: the event loop (health probes, other requests) keeps its turn; smaller ones take less than the
#: hand-off would save.
OFF_LOOP_BYTES = 256 * 1024


def _task(
    request: Request,
    facts: ModelFacts,
    prepared: PreparedRequest,
    deadline: float,
    *,
    outputs: bool,
    tracing: Tracing | None,
) -> ScoringTask:
    """The model work for a validated request, with the headers it may forward."""
    return ScoringTask(
        prepared.frame,
        facts.forwarding.select(request.headers),
        outputs=outputs,
        shapley=prepared.shapley,
        intervals=prepared.intervals,
        deadline=deadline,
        trace=tracing.current() if tracing is not None else None,
    )


#: FastAPI (0.16x) makes OpenTelemetry spans and metrics of its own whenever a tracer provider is
#: set: for the probes too, and beside ours for the paths it serves. Ours (server/tracing.py)
#: cover every /model/* path alike, hot or not, and SCORER_TRACING=off means none at all.
_NO_FRAMEWORK_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def _freeze_loaded_objects() -> None:
    """Exempt everything loaded so far (modules, the framework, the model) from collection.

    They live as long as the server, yet every full collection walked them all: 40 ms with the
    GIL held in a server with the model loaded, several times while a large request was parsed.
    Frozen, a full collection only walks what requests made since.
    """
    gc.collect()
    gc.freeze()


def _swagger_ui_files() -> str:
    import fastapi_offline

    directory = Path(fastapi_offline.__file__).parent / "static"
    if not (directory / "swagger-ui-bundle.js").is_file():
        raise ConfigurationError(f"fastapi-offline has no Swagger UI files in {directory}; reinstall it")
    return str(directory)


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _error_response(exc: ScorerError) -> Response:
    response = _json({"detail": exc.detail}, exc.status_code)
    retry_after = exc.retry_after if isinstance(exc, (Overloaded, NotReady)) else None
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    for name, value in getattr(exc, "headers", {}).items():
        response.headers[name] = value
    if getattr(exc, "close_connection", False):
        # The rest of the body was never read: the connection cannot carry another request.
        response.headers["Connection"] = "close"
    return response


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


def create_app(
    settings: Settings, host: ModelHost, *, on_load_failure: Callable[[], None] | None = None
) -> ScorerApp:
    """The ASGI app serving ``host``'s model. Starts loading it (if not loaded) at start-up.

    A bad credential setting raises ``ConfigurationError`` here, before anything listens."""
    state: dict[str, Any] = {}
    metrics = ScorerMetrics()
    tracing = Tracing.from_mode(settings.tracing)
    metrics.watch(
        model=lambda: (host.facts.model_id, host.facts.runtime) if host.ready else None,
        worker_restarts=lambda: getattr(host.executor, "restarts", 0) if host.ready else 0,
        workers=lambda: getattr(host.executor, "workers", []) if host.ready else [],
    )
    credentials = settings.credentials()
    auth = Authenticator(credentials) if credentials is not None else None
    if credentials is None:
        log.info(
            "No credential is configured (SCORER_PASSPHRASE, SCORER_PASSPHRASE_HASH, SCORER_OIDC_*): "
            "every /model/* endpoint is open"
        )
    else:
        log.info("Every /model/* endpoint needs %s", credentials.describe())
        if any(name.lower() == "authorization" for name in settings.header_forwarding.names):
            log.warning(
                "H2O_SCORER_FORWARD_HEADERS forwards Authorization while a credential is configured: "
                "model code will see every client's passphrase or token"
            )

    def dispatcher() -> Dispatcher:
        executor = host.executor
        current = state.get("dispatcher")
        if current is None:
            current = state["dispatcher"] = Dispatcher(executor, settings, metrics, tracing)
        return current

    @asynccontextmanager
    async def admitted(request: Request) -> AsyncIterator[tuple[Dispatcher, bytes, float]]:
        """A scoring POST past its gates: a JSON content type, a body within its size and time
        limits, then admission; with the deadline its answer must meet. The body is read first,
        so a slow client never holds a slot."""
        scoring = dispatcher()
        if scoring.admission.full:
            # Refused before its body is read or parsed: under overload a refusal must cost nothing.
            raise scoring.admission.refusal()
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, settings.max_request_bytes, settings.body_timeout)
        async with slot(scoring) as deadline:
            yield scoring, body, deadline

    @asynccontextmanager
    async def slot(scoring: Dispatcher) -> AsyncIterator[float]:
        """A scoring slot from admission, its wait counted and traced; the deadline the answer
        must meet."""
        queued = time.perf_counter()
        async with scoring.admission.admit():
            admitted_at = time.perf_counter()
            metrics.admission_wait(admitted_at - queued)
            if tracing is not None:
                tracing.span_between("scorer.admission", queued, admitted_at)
            yield scoring.deadline()

    def load_in_background() -> None:
        try:
            host.load()
            _freeze_loaded_objects()
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
        await host.close()
        if auth is not None:
            auth.close()

    app = FastAPI(
        title="scorer_core scoring API",
        version="1.2.0",
        description="H2O MOJO REST scoring API (v1.2.0-openapi3), served by scorer_core.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        **_NO_FRAMEWORK_TELEMETRY,
    )
    # Swagger UI's files come from the fastapi-offline package, so /docs works without internet.
    app.mount(DOCS_ASSETS, StaticFiles(directory=_swagger_ui_files()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Relative URLs: under a deployment prefix (/<id>/docs) an ingress forwards /<id>/... only.
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS[1:]}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS[1:]}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS[1:]}/favicon.png",
        )

    @app.exception_handler(ScorerError)
    async def scorer_error(request: Request, exc: ScorerError) -> Response:
        metrics.rejected(exc)
        if isinstance(exc, ModelError):
            log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
        return _error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        return _json({"detail": f"Failed scoring request due to: {type(exc).__name__}: {exc}"}, 500)

    def stuck() -> str | None:
        """Why the model cannot serve any more, so that only a restart helps: a call past its
        deadline by the stuck margin, or worker processes that could not be replaced."""
        if not host.ready:
            return None
        executor = host.executor
        age = executor.oldest_call_age()
        limit = settings.request_timeout + settings.stuck_call_margin
        if age > limit:
            return (
                f"a model call has run for {age:.0f} s, past SCORER_REQUEST_TIMEOUT plus "
                f"SCORER_STUCK_CALL_MARGIN ({limit:g} s); restart the server"
            )
        return executor.broken()

    @app.get("/healthz", response_class=PlainTextResponse, tags=["health"], responses={500: {}})
    async def healthz() -> Response:
        """Liveness: 200 ``OK`` while the process serves HTTP (the model may still be loading, or
        a worker restarting); 500 only when a restart would help: a model call in this process is
        stuck, or dead workers could not be replaced."""
        problem = stuck()
        if problem is not None:
            return PlainTextResponse(f"Not healthy: {problem}", status_code=500)
        return PlainTextResponse("OK")

    @app.get("/readyz", response_class=PlainTextResponse, tags=["health"], responses={500: {}})
    async def readyz() -> Response:
        """Readiness: 200 ``Ready`` once the model has loaded and a model call can be taken; 500
        ``Not ready`` before, while every worker process is dead or restarting, or while a model
        call is stuck."""
        if not host.ready:
            return PlainTextResponse("Not ready", status_code=500)
        problem = stuck() or host.executor.unavailable()
        if problem is not None:
            return PlainTextResponse(f"Not ready: {problem}", status_code=500)
        return PlainTextResponse("Ready")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (docs/metrics.md); open unless SCORER_METRICS_AUTH is true."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/model/id", response_class=PlainTextResponse, tags=["metadata"])
    async def model_id() -> str:
        """The id of the model being served (``MODEL_ID`` overrides it)."""
        return host.facts.model_id

    @app.get("/model/schema", response_model=ModelWire, tags=["metadata"])
    async def model_schema() -> Response:
        """The model's input and output fields with their types."""
        facts = host.facts
        return _json(
            {
                "id": facts.model_id,
                "schema": {
                    "inputFields": [f.to_wire() for f in facts.schema.inputs],
                    "outputFields": [
                        f.to_wire() for f in (*facts.schema.outputs, *facts.schema.interval_outputs)
                    ],
                },
            }
        )

    @app.get("/model/sample_request", response_model=ScoreRequest, tags=["metadata"])
    async def sample_request() -> Response:
        """A request that passes validation: every input field and one row of example values."""
        facts = host.facts
        return _json({"fields": [f.name for f in facts.schema.inputs], "rows": [list(facts.sample_row)]})

    @app.get("/model/capabilities", response_model=list[str], tags=["metadata"])
    async def capabilities() -> Response:
        """What this model can do, narrowed by the Shapley settings."""
        return _json(host.facts.wire_capabilities)

    @app.post(
        "/model/score",
        response_model=ScoreResponse,
        responses=_ERRORS,
        openapi_extra=_body_schema("ScoreRequest"),
        tags=["scoring"],
    )
    async def score(request: Request) -> Response:
        """Score the rows in the body."""
        facts = host.facts
        async with admitted(request) as (scoring, body, deadline):
            large = len(body) >= OFF_LOOP_BYTES

            def prepare() -> PreparedRequest:
                fast = numeric_frame(body, facts.schema)
                if fast is not None:
                    return prepare_score(fast[0], facts, frame=fast[1])
                return prepare_score(parse_request(ScoreRequest, body), facts)

            prepared = await scoring.off_loop(prepare, deadline) if large else prepare()
            request.scope[ROWS_KEY] = prepared.frame.num_rows
            task = _task(request, facts, prepared, deadline, outputs=True, tracing=tracing)
            result = await scoring.score(task)
            if not large:
                return _json(score_body(facts.model_id, prepared, result))

            def answer() -> bytes:
                shaped = score_body(facts.model_id, prepared, result, lazy=True)
                payload = encode(shaped)
                # Freed here, a chunk at a time, rather than all at once when the request ends.
                release(prepared.rows)
                for column in shaped["score"].columns:
                    release(column)
                return payload

            return Response(await scoring.off_loop(answer, deadline), media_type="application/json")

    @app.get(
        "/model/score",
        response_model=ScoreResponse,
        tags=["scoring"],
        responses={**_ERRORS, 501: {"model": ErrorResponse, "description": "SCORER_FILE_SCORING_DIR unset"}},
    )
    async def score_file(request: Request, file: str | None = None) -> Response:
        """Score the rows of a CSV, Parquet or JSON Lines file in SCORER_FILE_SCORING_DIR, named
        relative to it; 501 when no directory is configured."""
        if settings.file_scoring_dir is None:
            raise UnsupportedOperation(
                "scoring a file on the server is not enabled (SCORER_FILE_SCORING_DIR); POST the rows "
                "to /model/score"
            )
        if not file:
            raise InvalidRequest("give the file to score: GET /model/score?file=NAME")
        limits = ReadLimits(settings.file_max_rows, settings.file_decoded_bytes)
        # Opened once, here, and only that descriptor read: a path checked now and opened later
        # could name another file by then (server/files.py).
        with open_client_file(settings.file_scoring_dir, file, settings.max_request_bytes) as source:
            return await score_opened_file(request, source, limits)

    async def score_opened_file(request: Request, source: ClientFile, limits: ReadLimits) -> Response:
        """The rows of a file opened for this request, admitted and scored as a POST of them."""
        facts = host.facts
        scoring = dispatcher()
        if scoring.admission.full:
            raise scoring.admission.refusal()
        async with slot(scoring) as deadline:

            def prepare() -> PreparedRequest:
                with source.reading() as handle:
                    fields, rows = read_table(handle, source.kind, source.name, limits)
                return prepare_score(ScoreRequest.of_cells(fields, rows), facts)

            prepared = await scoring.off_loop(prepare, deadline)
            request.scope[ROWS_KEY] = prepared.frame.num_rows
            task = _task(request, facts, prepared, deadline, outputs=True, tracing=tracing)
            result = await scoring.score(task)
            payload = await scoring.off_loop(
                lambda: encode(score_body(facts.model_id, prepared, result)), deadline
            )
            return Response(payload, media_type="application/json")

    @app.post(
        "/model/contribution",
        response_model=ContributionResponse,
        responses={**_ERRORS, 501: {"model": ErrorResponse, "description": "No contributions"}},
        openapi_extra=_body_schema("ContributionRequest"),
        tags=["contribution"],
    )
    async def contribution(request: Request) -> Response:
        """Shapley contributions of the rows in the body."""
        facts = host.facts
        async with admitted(request) as (scoring, body, deadline):
            large = len(body) >= OFF_LOOP_BYTES

            def prepare() -> PreparedRequest:
                return prepare_contribution(parse_request(ContributionRequest, body), facts)

            prepared = await scoring.off_loop(prepare, deadline) if large else prepare()
            request.scope[ROWS_KEY] = prepared.frame.num_rows
            task = _task(request, facts, prepared, deadline, outputs=False, tracing=tracing)
            result = await scoring.score(task)
            contributions = result.contributions
            assert contributions is not None
            if not large:
                return _json(contribution_body(contributions))
            payload = await scoring.off_loop(lambda: encode(contribution_body(contributions)), deadline)
            return Response(payload, media_type="application/json")

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

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ScorerError):
            return await scorer_error(request, exc)
        return await unexpected_error(request, exc)

    hot = {"/model/score": score, "/model/contribution": contribution}
    return ScorerApp(
        app,
        hot,
        on_error,
        auth,
        metrics,
        protect_metrics=settings.metrics_auth,
        access_log=settings.access_logging,
        tracing=tracing,
        stuck=stuck,
    )
