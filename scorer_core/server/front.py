"""The ASGI entry: the deployment prefix, then the scoring POSTs straight to their endpoints.

Why: under single-row load, about 60% of the server's time went to the web framework's stack
around each request (error middlewares, exception middleware, exit stacks, routing, dependency
solving), against 8% in the model. ``POST /model/score`` and ``/model/contribution`` need none
of it: they read their own body, raise ``ScorerError`` for every contract error, and return a
ready ``Response``. So they are called directly, with the same error handlers the framework
would call; every other path (and the OpenAPI description of these two, which is unchanged)
goes through FastAPI as before.

The credential gate (``server/auth.py``) comes first, for every ``/model/*`` path, so that a
request without the deployment's credential is refused before it reads a body or takes a slot.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from scorer_core.server.auth import Authenticator
from scorer_core.server.metrics import ScorerMetrics, endpoint_of

__all__ = ["DOCS_ASSETS", "PREFIXABLE", "ScorerApp", "unprefixed"]

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

#: Where /docs loads Swagger UI's scripts and styles from.
DOCS_ASSETS = "/docs-assets"
#: Paths served both at the root and under one leading segment (H2O MLOps's deployment id).
PREFIXABLE = ("/model/", "/readyz", "/healthz", "/metrics", "/openapi.json", "/docs", DOCS_ASSETS)


def unprefixed(scope: Scope) -> Scope:
    """``/<deployment-id>/model/score`` as ``/model/score``, as H2O MLOps clients send it."""
    path: str = scope["path"]
    if not path.startswith(PREFIXABLE):
        second = path.find("/", 1)
        if second > 0 and path[second:].startswith(PREFIXABLE):
            scope = dict(scope)
            scope["path"] = path[second:]
            scope["raw_path"] = path[second:].encode()
    return scope


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
    ) -> None:
        self.api = api
        self._hot = dict(hot)
        self._on_error = on_error
        self.auth = auth
        self.metrics = metrics
        self._protected = ("/model/", "/metrics") if protect_metrics else ("/model/",)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        scope = unprefixed(scope)
        metrics = self.metrics
        if metrics is None:
            await self._serve(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._serve(scope, receive, sent)
        finally:
            metrics.request(endpoint_of(scope["path"]), status, time.perf_counter() - started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if self.auth is not None and path.startswith(self._protected):
            try:
                await self.auth.check([value for name, value in scope["headers"] if name == b"authorization"])
            except Exception as exc:
                # The body is left unread: the connection cannot carry another request.
                exc.close_connection = scope["method"] not in ("GET", "HEAD")  # type: ignore[attr-defined]
                response = await self._on_error(Request(scope, receive), exc)
                await response(scope, receive, send)
                return
        endpoint = self._hot.get(path) if scope["method"] == "POST" else None
        if endpoint is None:
            await self.api(scope, receive, send)
            return
        request = Request(scope, receive)
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            try:
                response = await endpoint(request)
            except Exception as exc:
                response = await self._on_error(request, exc)
        finally:
            if self.metrics is not None:
                self.metrics.in_flight.dec()
        await response(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI description, which covers the hot endpoints too."""
        return self.api.openapi()
