"""The ASGI entry: the deployment prefix, then the scoring POSTs straight to their endpoints.

Why: under single-row load, about 60% of the server's time went to the web framework's stack
around each request (error middlewares, exception middleware, exit stacks, routing, dependency
solving), against 8% in the model. ``POST /model/score`` and ``/model/contribution`` need none
of it: they read their own body, raise ``ScorerError`` for every contract error, and return a
ready ``Response``. So they are called directly, with the same error handlers the framework
would call; every other path (and the OpenAPI description of these two, which is unchanged)
goes through FastAPI as before. Which routes are served so is listed in one place,
``server/app.py``'s ``OUTSIDE_FRAMEWORK``: FastAPI middleware, dependencies and exception
handlers never run on them.

The credential gate (``server/auth.py``) comes first, for every ``/model/*`` and ``/v2/models/*``
path (``PROTECTED``), so that a
request without the deployment's credential is refused before it reads a body or takes a slot.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from scorer_core.config.logs import current_request_id, new_request_id
from scorer_core.server.auth import Authenticator
from scorer_core.server.metrics import ScorerMetrics, endpoint_of
from scorer_core.server.tracing import Tracing
from scorer_core.service.scored import Arrival, current_arrival

__all__ = [
    "CLIENT_CLOSED",
    "DOCS_ASSETS",
    "PREFIXABLE",
    "PREFIX_KEY",
    "PROTECTED",
    "ROWS_KEY",
    "ScorerApp",
    "log_access",
    "request_id_of",
    "unprefixed",
]

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

#: The scope key a scoring endpoint records its request's row count under, for the access log.
ROWS_KEY = "scorer.rows"
#: Where ``unprefixed`` leaves the deployment prefix it took off (``/<deployment-id>``).
PREFIX_KEY = "scorer.prefix"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
access_log = logging.getLogger("scorer_core.access")
log = logging.getLogger(__name__)
#: The status recorded for a request whose client closed the connection before it was answered
#: (nginx's 499): no status line was sent, and it is the client's doing, not a server error.
CLIENT_CLOSED = 499

#: Where /docs loads Swagger UI's scripts and styles from.
DOCS_ASSETS = "/docs-assets"
#: Paths served both at the root and under one leading segment (H2O MLOps's deployment id).
PREFIXABLE = (
    "/model/",
    "/admin/",
    "/v2",
    "/readyz",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/docs",
    DOCS_ASSETS,
)
#: The paths that need the deployment's credential: H2O's, the Open Inference Protocol's model
#: paths (its server metadata and health probes stay open, as ``/healthz`` and ``/readyz`` are),
#: and the admin API's (which needs its own passphrase too).
PROTECTED = ("/model/", "/v2/models/", "/admin/")


def request_id_of(scope: Scope) -> str:
    """The client's ``X-Request-Id`` when it is a plain token, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return new_request_id()


def log_access(scope: Scope, endpoint: str, status: int, seconds: float, request_id: str) -> None:
    """The access log's line for one request (of either front: gRPC's calls pass a scope of their
    own, with the method's path)."""
    client = scope.get("client")
    rows = scope.get(ROWS_KEY)
    # Percent-encoded again: a decoded path may hold a newline that would forge a log line.
    path = quote(scope["path"], safe=_PATH_SAFE)
    access_log.info(
        "%s %s %d %.1f ms%s",
        scope["method"],
        path,
        status,
        seconds * 1000,
        f" rows={rows}" if rows is not None else "",
        extra={
            "request_id": request_id,
            "method": scope["method"],
            "path": path,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "rows": rows,
            "client": f"{client[0]}:{client[1]}" if client else None,
        },
    )


def unprefixed(scope: Scope) -> Scope:
    """``/<deployment-id>/model/score`` as ``/model/score``, as H2O MLOps clients send it.

    A host that mounts the app under a path (Ray Serve's ``route_prefix``) says so in
    ``root_path``, which ASGI keeps in ``path`` too: it is taken off first, so the deployment
    prefix is the segment after it. ``root_path`` is then cleared whatever it held, so that
    the path the credential gate checks is the one the routes match (a ``root_path`` left in
    the scope would be taken off a second time by Starlette's router, past the gate)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root and path.startswith("/model/"):
        return scope  # the scoring requests, as most clients send them: nothing to take off
    changed = False
    prefix: str | None = None
    if root:
        if path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
            path = path[len(root) :] or "/"
        changed = True
    if not _prefixable(path):
        second = path.find("/", 1)
        if second > 0 and _prefixable(path[second:]):
            prefix, path = path[:second], path[second:]
            changed = True
    if changed:
        scope = dict(scope)
        scope["path"], scope["raw_path"], scope["root_path"] = path, path.encode(), ""
        if prefix is not None:
            scope[PREFIX_KEY] = prefix
    return scope


#: The app's own paths, by whole segments (``/docsX`` is not ``/docs``): one match per request.
_APP_PATH = re.compile(
    "|".join(re.escape(known) + ("" if known.endswith("/") else "(?:/|$)") for known in PREFIXABLE)
)


def _pattern(path: str) -> re.Pattern[str]:
    """``/v2/models/{model_name}/infer`` as a pattern whose groups are its parameters, each one
    path segment."""
    parts = re.split(r"\{(\w+)\}", path)
    return re.compile(
        "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
    )


def _prefixable(path: str) -> bool:
    return _APP_PATH.match(path) is not None


class _Answer:
    """``send``, remembering the status the response started with (500 until then: what the
    client sees if the app fails before it answers), and adding ``extra`` headers to it."""

    def __init__(self, send: Send, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self._send = send
        self._extra = extra
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self._extra:
                message["headers"] = [*message.get("headers", ()), *self._extra]
        await self._send(message)

    def client_gone(self) -> None:
        """Record ``CLIENT_CLOSED`` here and in every ``_Answer`` this one wraps, sending nothing:
        the connection is closed."""
        self.status = CLIENT_CLOSED
        if isinstance(self._send, _Answer):
            self._send.client_gone()


class ScorerApp:
    """The server's ASGI application: ``api`` (FastAPI) for every path but the ``hot`` POSTs."""

    def __init__(
        self,
        api: FastAPI,
        hot: Mapping[str, Endpoint],
        on_error: ErrorHandler,
        auth: Authenticator | None = None,
        metrics: ScorerMetrics | None = None,
        *,
        protect_metrics: bool = False,
        access_log: bool = False,
        monitored: bool = False,
        tracing: Tracing | None = None,
        stuck: Callable[[], str | None] | None = None,
        call_age: Callable[[], float] | None = None,
    ) -> None:
        self.api = api
        self._stuck = stuck
        self._call_age = call_age
        self._hot = {path: endpoint for path, endpoint in hot.items() if "{" not in path}
        #: Paths with parameters (``/v2/models/{model_name}/infer``), matched in order.
        self._hot_patterns = [(_pattern(path), endpoint) for path, endpoint in hot.items() if "{" in path]
        self._on_error = on_error
        self.auth = auth
        self.metrics = metrics
        self._protected = (*PROTECTED, "/metrics") if protect_metrics else PROTECTED
        self._access_log = access_log
        #: Monitoring on: every request gets an id (answered in ``X-Request-Id``, as with the
        #: access log) and an ``Arrival``, which the data plane puts in its ``ScoredRequest``.
        self._monitored = monitored
        self._request_ids = access_log or monitored
        self._tracing = tracing

    def stuck(self) -> str | None:
        """Why only a restart can bring scoring back (``/healthz``'s 500), or ``None``: for hosts
        with their own health checks, such as Ray Serve's replicas."""
        return self._stuck() if self._stuck is not None else None

    def oldest_call_age(self) -> float:
        """Seconds the longest model call still running has run (0: none), replaced models'
        included: how long a stopping server's last thread may still run."""
        return self._call_age() if self._call_age is not None else 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        scope = unprefixed(scope)
        metrics = self.metrics
        if metrics is None and not self._request_ids and self._tracing is None:
            await self._serve(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope) if self._request_ids else None
        extra = [(b"x-request-id", request_id.encode())] if request_id is not None else []
        answer = _Answer(send, extra)
        token = current_request_id.set(request_id) if request_id is not None else None
        arrival = None
        if self._monitored:
            arrival = current_arrival.set(Arrival(time.time(), scope.get(PREFIX_KEY)))
        try:
            await self._serve(scope, receive, answer)
        finally:
            seconds = time.perf_counter() - started
            endpoint = endpoint_of(scope["path"])
            if metrics is not None:
                metrics.request(endpoint, answer.status, seconds)
            if request_id is not None and self._access_log:
                log_access(scope, endpoint, answer.status, seconds, request_id)
            if token is not None:
                current_request_id.reset(token)
            if arrival is not None:
                current_arrival.reset(arrival)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if self.auth is not None and path.startswith(self._protected):
            client = scope.get("client")
            try:
                await self.auth.check(
                    [value for name, value in scope["headers"] if name == b"authorization"],
                    client[0] if client else None,
                )
            except Exception as exc:
                response = await self._on_error(Request(scope, receive), exc)
                if scope["method"] not in ("GET", "HEAD"):
                    # The body is left unread: the connection cannot carry another request.
                    response.headers["Connection"] = "close"
                await response(scope, receive, send)
                return
        if self._tracing is not None and path.startswith(PROTECTED):
            # After the credential: a refused request neither joins a caller's trace nor names a span.
            await self._traced(scope, receive, send)
            return
        await self._dispatch(scope, receive, send)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._tracing is not None
        answer = _Answer(send)
        with self._tracing.request(scope, endpoint_of(scope["path"])) as span:
            try:
                await self._dispatch(scope, receive, answer)
            finally:
                span.set_attribute("http.response.status_code", answer.status)
                if ROWS_KEY in scope:
                    span.set_attribute("scorer.rows", scope[ROWS_KEY])
                if answer.status >= 500:
                    span.set_status(self._tracing.error_status())

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        endpoint = self._hot_endpoint(path) if scope["method"] == "POST" else None
        if endpoint is None:
            await self.api(scope, receive, send)
            return
        request = Request(scope, receive)
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            try:
                response = await endpoint(request)
            except ClientDisconnect:
                self._client_gone(scope, send)
                return
            except Exception as exc:
                response = await self._on_error(request, exc)
        finally:
            if self.metrics is not None:
                self.metrics.in_flight.dec()
        await response(scope, receive, send)

    def _hot_endpoint(self, path: str) -> Endpoint | None:
        endpoint = self._hot.get(path)
        if endpoint is not None or not self._hot_patterns:
            return endpoint
        for pattern, candidate in self._hot_patterns:
            match = pattern.fullmatch(path)
            if match is not None:
                return functools.partial(candidate, **match.groupdict())
        return None

    def _client_gone(self, scope: Scope, send: Send) -> None:
        """The client closed the connection before its body was read: nobody is left to answer,
        and the fault is not the server's, so it is no 500 and no traceback. Counted with the
        rejections and as status 499, as nginx logs it, and logged at debug only: any client can
        cause it, as often as it likes."""
        if self.metrics is not None:
            self.metrics.client_disconnected()
        if isinstance(send, _Answer):
            send.client_gone()
        log.debug(
            "%s %s: the client closed the connection before its body was read", scope["method"], scope["path"]
        )

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI description, which covers the hot endpoints too."""
        return self.api.openapi()
