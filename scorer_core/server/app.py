"""The app: built from route tables (the probes here, H2O's in ``h2o_routes``) and two small
endpoint classes over one ``DataPlane``, with the routes served outside FastAPI listed in
``OUTSIDE_FRAMEWORK``."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError, ModelError, ScorerError
from scorer_core.monitor.monitor import Monitor
from scorer_core.server.admin_routes import ADMIN_ROUTES, MIN_PASSPHRASE, AdminEndpoints
from scorer_core.server.auth import Authenticator
from scorer_core.server.front import DOCS_ASSETS, Endpoint, ScorerApp
from scorer_core.server.grpc_front import GrpcFront
from scorer_core.server.h2o_routes import ROUTES, H2OEndpoints, Route, json_response
from scorer_core.server.metrics import CONTENT_TYPE, ScorerMetrics
from scorer_core.server.oip_routes import OIP_PATHS, OIP_ROUTES, OIPEndpoints
from scorer_core.server.tracing import Tracing
from scorer_core.service.host import ModelHost
from scorer_core.service.plane import DataPlane, Observers
from scorer_core.service.replacement import ModelReplacement
from scorer_core.service.watch import ModelWatch
from scorer_core.wire.contract import ContributionRequest, ScoreRequest

__all__ = ["DOCS_ASSETS", "OUTSIDE_FRAMEWORK", "Endpoints", "create_app"]

log = logging.getLogger(__name__)

TITLE = "scorer_core scoring API"


#: FastAPI (0.16x) makes OpenTelemetry spans and metrics of its own whenever a tracer provider is
#: set: for the probes too, and beside ours for the paths it serves. Ours (server/tracing.py)
#: cover every /model/* path alike, hot or not, and SCORER_TRACING=off means none at all.
_NO_FRAMEWORK_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


#: Net allocations of tracked objects between two young collections (CPython's default: 700).
#: A server's requests allocate and free their objects in step, so at 700 the count crossed the
#: threshold every few requests on the objects merely in flight, and each young collection walked
#: them: 9 to 13 us of a single-row request's CPU, the model thread's included, on four models of
#: the benchmark set (breast-cancer, hgb, credit, churn; 64 connections). At 5,000 the collections
#: that remain are those the models' own reference cycles call for, 0.1 to 1.3 us a request, and
#: the cycles are still collected (each holds a few KiB at most until then).
YOUNG_COLLECTION_THRESHOLD = 5000


def _settle_collector() -> None:
    """Exempt everything loaded so far (modules, the framework, the model) from collection, and
    collect young objects less often (``YOUNG_COLLECTION_THRESHOLD``).

    The loaded objects live as long as the server, yet every full collection walked them all:
    40 ms with the GIL held in a server with the model loaded, several times while a large request
    was parsed. Frozen, a full collection only walks what requests made since.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def _swagger_ui_files() -> str:
    import fastapi_offline

    directory = Path(fastapi_offline.__file__).parent / "static"
    if not (directory / "swagger-ui-bundle.js").is_file():
        raise ConfigurationError(f"fastapi-offline has no Swagger UI files in {directory}; reinstall it")
    return str(directory)


def _is_oip(path: str) -> bool:
    return path == OIP_PATHS or path.startswith(OIP_PATHS + "/")


def _error_response(exc: ScorerError, path: str) -> Response:
    """The error's answer in the spelling of the protocol its path belongs to: H2O's
    ``{"detail": ...}``, or the Open Inference Protocol's ``{"error": ...}``."""
    if _is_oip(path):
        response = json_response({"error": exc.message}, exc.status_code)
    else:
        response = json_response({"detail": exc.detail}, exc.status_code)
    response.headers.update(exc.response_headers())
    return response


def _described(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI description, with the request bodies' schemas (the scoring POSTs read their
    own bodies, so FastAPI cannot find them from the endpoints' parameters)."""
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


def _authenticator(settings: Settings) -> Authenticator | None:
    """The credential gate of ``/model/*``; ``ConfigurationError`` on a bad credential setting."""
    credentials = settings.credentials()
    if credentials is None:
        log.info(
            "No credential is configured (SCORER_PASSPHRASE, SCORER_PASSPHRASE_HASH, SCORER_OIDC_*): "
            "every /model/* endpoint is open"
        )
        return None
    log.info("Every /model/* endpoint needs %s", credentials.describe())
    if any(name.lower() == "authorization" for name in settings.header_forwarding.names):
        log.warning(
            "H2O_SCORER_FORWARD_HEADERS forwards Authorization while a credential is configured: "
            "model code will see every client's passphrase or token"
        )
    return Authenticator(credentials)


class Endpoints:
    """The app's own endpoints (probes, metrics, docs), its lifespan and its error handlers, over
    one model host; the H2O routes are ``H2OEndpoints``."""

    def __init__(
        self,
        settings: Settings,
        host: ModelHost,
        plane: DataPlane,
        metrics: ScorerMetrics,
        auth: Authenticator | None,
        on_load_failure: Callable[[], None] | None,
        monitor: Monitor | None = None,
        replacement: ModelReplacement | None = None,
    ) -> None:
        self._settings = settings
        self._replacement = replacement
        self._monitor = monitor
        self._host = host
        self._plane = plane
        self._metrics = metrics
        self._auth = auth
        self._on_load_failure = on_load_failure
        #: The gRPC front on the same plane (SCORER_GRPC_PORT), served for the app's lifespan.
        self.grpc: GrpcFront | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        self._watching: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        if not self._host.loaded.is_set():
            threading.Thread(target=self._load_in_background, name="model-loader", daemon=True).start()
        if self._monitor is not None:
            self._monitor.start()
        if self.grpc is not None:
            await self.grpc.start()  # on this loop, the plane's: its batcher is bound to it
        reloading = self._reload_on_sighup()
        if self._replacement is not None and self._settings.model_watch:
            watch = ModelWatch(self._replacement, self._settings.model_watch_seconds)
            self._watching = asyncio.get_running_loop().create_task(watch.run(), name="model-watch")
        yield
        if reloading:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        # No replacement may switch or retire while the plane and the host close below.
        background = [*self._reloads, *([self._watching] if self._watching is not None else [])]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._replacement is not None:
            await self._replacement.close()
        if self.grpc is not None:
            await self.grpc.stop(self._settings.shutdown_grace)
        if self._monitor is not None:
            # After the requests in flight, whose events it must send too.
            await asyncio.to_thread(self._monitor.close, self._settings.monitor_flush_seconds)
        await self._plane.close()
        await self._host.close()
        if self._auth is not None:
            self._auth.close()

    def _reload_on_sighup(self) -> bool:
        """SIGHUP loads the start-up model path again (a new version copied over it), as a
        replacement: whether the handler was set (only a server in the main thread can)."""
        replacement = self._replacement
        if replacement is None or threading.current_thread() is not threading.main_thread():
            return False
        loop = asyncio.get_running_loop()

        def reload() -> None:
            if len(self._reloads) > 1:  # one running, one waiting to start: that one will do
                return
            log.info("SIGHUP: loading '%s' again", replacement.startup_path)
            task = loop.create_task(self._reload())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

        try:
            loop.add_signal_handler(signal.SIGHUP, reload)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals on this loop
            return False
        return True

    async def _reload(self) -> None:
        assert self._replacement is not None
        try:
            await self._replacement.reload()
        except ScorerError:
            pass  # logged, counted and kept as the last failure by the replacement
        except Exception:
            log.exception("Reloading the model on SIGHUP failed")

    def _load_in_background(self) -> None:
        try:
            self._host.load()
            _settle_collector()
        except BaseException as exc:
            if isinstance(exc, ConfigurationError):
                # The operator's to fix, and the message says how: a traceback would bury it.
                log.error("Model failed to load; the server will stop: %s", exc)
            else:
                log.exception("Model failed to load; the server will stop")
            if self._on_load_failure is not None:
                self._on_load_failure()

    async def docs(self) -> HTMLResponse:
        # Relative URLs: under a deployment prefix (/<id>/docs) an ingress forwards /<id>/... only.
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{TITLE} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS[1:]}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS[1:]}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS[1:]}/favicon.png",
        )

    def stuck(self) -> str | None:
        """Why the model cannot serve any more, so that only a restart helps: a call past its
        deadline by the stuck margin, or worker processes that could not be replaced."""
        if not self._host.ready:
            return None
        executor = self._host.executor
        age = self.oldest_call_age()
        limit = self._settings.request_timeout + self._settings.stuck_call_margin
        if age > limit:
            return (
                f"a model call has run for {age:.0f} s, past SCORER_REQUEST_TIMEOUT plus "
                f"SCORER_STUCK_CALL_MARGIN ({limit:g} s); restart the server"
            )
        return executor.broken()

    def oldest_call_age(self) -> float:
        """Seconds the longest model call still running has run: the served model's, or a
        replaced model's that was closed while a call of it still ran (0: none)."""
        age = self._host.executor.oldest_call_age() if self._host.ready else 0.0
        if self._replacement is not None:
            age = max(age, self._replacement.oldest_lingering_call())
        return age

    def problem(self, probe: str) -> str | None:
        """Why the server is not live (``probe`` ``"live"``: only a restart would help) or not
        ready (``"ready"``: no model call can be taken now), or ``None``; for every protocol's
        probes alike."""
        if probe == "live":
            return self.stuck()
        if not self._host.ready:
            return "the model failed to load" if self._host.error is not None else "the model is loading"
        return self.stuck() or self._host.executor.unavailable()

    async def healthz(self) -> Response:
        """Liveness: 200 ``OK`` while the process serves HTTP (the model may still be loading, or
        a worker restarting); 500 only when a restart would help: a model call in this process is
        stuck, or dead workers could not be replaced."""
        problem = self.problem("live")
        if problem is not None:
            return PlainTextResponse(f"Not healthy: {problem}", status_code=500)
        return PlainTextResponse("OK")

    async def readyz(self) -> Response:
        """Readiness: 200 ``Ready`` once the model has loaded and a model call can be taken; 500
        ``Not ready`` before, while every worker process is dead or restarting, or while a model
        call is stuck."""
        if not self._host.ready:
            return PlainTextResponse("Not ready", status_code=500)
        problem = self.problem("ready")
        if problem is not None:
            return PlainTextResponse(f"Not ready: {problem}", status_code=500)
        return PlainTextResponse("Ready")

    async def prometheus_metrics(self) -> Response:
        """Prometheus metrics (docs/metrics.md); open unless SCORER_METRICS_AUTH is true."""
        return Response(self._metrics.render(), media_type=CONTENT_TYPE)

    async def scorer_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ScorerError)
        self._metrics.rejected(exc)
        if isinstance(exc, ModelError):
            log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
        return _error_response(exc, request.scope["path"])

    async def unexpected_error(self, request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        error = ModelError(f"{type(exc).__name__}: {exc}", runtime="scorer_core")
        return _error_response(error, request.scope["path"])

    async def framework_error(self, request: Request, exc: Exception) -> Response:
        """The framework's own refusals (an unknown path's 404, a method's 405): under ``/v2``
        as the Open Inference Protocol spells every error, elsewhere as FastAPI does."""
        assert isinstance(exc, StarletteHTTPException)
        if not _is_oip(request.scope["path"]):
            return await http_exception_handler(request, exc)
        response = json_response({"error": str(exc.detail)}, exc.status_code)
        response.headers.update(exc.headers or {})
        return response

    async def on_error(self, request: Request, exc: Exception) -> Response:
        """The handler FastAPI would pick, for the routes served outside it."""
        if isinstance(exc, ScorerError):
            return await self.scorer_error(request, exc)
        return await self.unexpected_error(request, exc)


_PROBE = {"response_class": PlainTextResponse, "tags": ["health"]}
#: The app's own routes, registered before H2O's (``h2o_routes.ROUTES``).
OWN_ROUTES = (
    Route("GET", "/docs", "docs", {"include_in_schema": False}),
    Route("GET", "/healthz", "healthz", {**_PROBE, "responses": {500: {}}}),
    Route("GET", "/readyz", "readyz", {**_PROBE, "responses": {500: {}}}),
    Route("GET", "/metrics", "prometheus_metrics", _PROBE),
)

#: The routes ``front.ScorerApp`` serves itself, outside FastAPI, for speed: under single-row
#: load FastAPI's stack around a request took about 60% of the server's time (front.py). What
#: that means: FastAPI middleware, dependencies and exception handlers never run on these; their
#: errors go to ``Endpoints.on_error``, the handlers FastAPI would pick. They are declared to
#: FastAPI too, for the OpenAPI description only. Keep this list to what that speed is worth.
#: A path may hold ``{parameters}``, which the endpoint receives by name.
OUTSIDE_FRAMEWORK = (
    ("POST", "/model/score"),
    ("POST", "/model/contribution"),
    ("POST", "/v2/models/{model_name}/infer"),
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer"),
)


def _admin_checked(settings: Settings, replaceable: bool) -> bool:
    """Whether the admin routes exist; ``ConfigurationError`` for an admin passphrase too short,
    or set where the model cannot be replaced."""
    if settings.admin_passphrase is None:
        return False
    if len(settings.admin_passphrase.get_secret_value()) < MIN_PASSPHRASE:
        raise ConfigurationError(f"SCORER_ADMIN_PASSPHRASE must be at least {MIN_PASSPHRASE} characters long")
    if not replaceable:
        raise ConfigurationError("SCORER_ADMIN_PASSPHRASE is set, but this host cannot replace its model")
    if settings.credentials() is None:
        log.warning(
            "SCORER_ADMIN_PASSPHRASE is set without a deployment credential: /admin/model needs the "
            "admin passphrase alone"
        )
    log.info("/admin/model is on: the served model can be replaced (X-Admin-Passphrase)")
    return True


def _routed(app: FastAPI, tables: Sequence[tuple[object, Sequence[Route]]]) -> dict[str, Endpoint]:
    """Declare each table's routes to ``app``, in order; the endpoints of those served outside
    the framework (``OUTSIDE_FRAMEWORK``), by path."""
    outside: dict[str, Endpoint] = {}
    for owner, routes in tables:
        for route in routes:
            endpoint = getattr(owner, route.endpoint)
            app.add_api_route(route.path, endpoint, methods=[route.method], **route.options)
            if (route.method, route.path) in OUTSIDE_FRAMEWORK:
                outside[route.path] = endpoint
    # front.ScorerApp takes only POSTs outside the framework, by path.
    assert sorted(outside) == sorted(path for method, path in OUTSIDE_FRAMEWORK if method == "POST")
    return outside


def create_app(
    settings: Settings,
    host: ModelHost,
    *,
    on_load_failure: Callable[[], None] | None = None,
    replacement: Callable[[DataPlane], ModelReplacement] | None = None,
) -> ScorerApp:
    """The ASGI app serving ``host``'s model. Starts loading it (if not loaded) at start-up.

    ``replacement`` makes what replaces the model (``/admin/model``, SIGHUP) over the app's
    plane; without it the model is served until the process ends. A bad credential setting
    raises ``ConfigurationError`` here, before anything listens."""
    admin = _admin_checked(settings, replacement is not None)
    metrics = ScorerMetrics()
    tracing = Tracing.from_mode(settings.tracing)
    auth = _authenticator(settings)
    monitor = Monitor.from_settings(settings)  # a bad monitoring setting stops start-up here
    if monitor is not None:
        metrics.registry.register(monitor.collector)

    def admitted(queued: float, admitted_at: float) -> None:
        metrics.admission_wait(admitted_at - queued)
        if tracing is not None:
            tracing.span_between("scorer.admission", queued, admitted_at)

    observers = Observers(
        admission=admitted,
        batches=[o.batch for o in (metrics, tracing) if o is not None],
        trace=tracing.current if tracing is not None else None,
        scored=monitor.observer if monitor is not None else None,
    )
    plane = DataPlane(lambda: host.executor, settings, observers)
    replacer = replacement(plane) if replacement is not None else None
    metrics.watch(
        model=lambda: (host.facts.model_id, host.facts.runtime) if host.ready else None,
        worker_restarts=lambda: (
            (host.executor.restarts if host.ready else 0) + (replacer.retired_restarts if replacer else 0)
        ),
        workers=lambda: host.executor.workers if host.ready else [],
        replacements=lambda: replacer.counts if replacer is not None else {},
    )
    endpoints = Endpoints(settings, host, plane, metrics, auth, on_load_failure, monitor, replacer)
    if settings.grpc_port is not None:
        endpoints.grpc = GrpcFront(
            settings,
            plane,
            metrics,
            auth,
            endpoints.problem,
            tracing=tracing,
            access_log=settings.access_logging,
            monitored=monitor is not None,
        )
    app = FastAPI(
        title=TITLE,
        version="1.2.0",
        description="H2O MOJO REST scoring API (v1.2.0-openapi3), served by scorer_core.",
        lifespan=endpoints.lifespan,
        docs_url=None,
        redoc_url=None,
        **_NO_FRAMEWORK_TELEMETRY,
    )
    # Swagger UI's files come from the fastapi-offline package, so /docs works without internet.
    app.mount(DOCS_ASSETS, StaticFiles(directory=_swagger_ui_files()), name="docs-assets")
    tables: list[tuple[object, tuple[Route, ...]]] = [
        (endpoints, OWN_ROUTES),
        (H2OEndpoints(settings, plane), ROUTES),
        (OIPEndpoints(settings, plane, endpoints.problem), OIP_ROUTES),
    ]
    if admin:
        assert replacer is not None
        tables.append((AdminEndpoints(settings, replacer), ADMIN_ROUTES))
    outside = _routed(app, tables)
    app.add_exception_handler(ScorerError, endpoints.scorer_error)
    app.add_exception_handler(StarletteHTTPException, endpoints.framework_error)
    app.add_exception_handler(Exception, endpoints.unexpected_error)
    app.openapi = functools.partial(_described, app)  # type: ignore[method-assign]
    return ScorerApp(
        app,
        outside,
        endpoints.on_error,
        auth,
        metrics,
        protect_metrics=settings.metrics_auth,
        access_log=settings.access_logging,
        monitored=monitor is not None,
        tracing=tracing,
        stuck=endpoints.stuck,
        call_age=endpoints.oldest_call_age,
    )
