"""The ASGI entry: the deployment prefix, then the scoring POSTs straight to their endpoints.

Why: under single-row load, about 60% of the server's time went to the web framework's stack
around each request (error middlewares, exception middleware, exit stacks, routing, dependency
solving), against 8% in the model. ``POST /model/score`` and ``/model/contribution`` need none
of it: they read their own body, raise ``ScorerError`` for every contract error, and return a
ready ``Response``. So they are called directly, with the same error handlers the framework
would call; every other path (and the OpenAPI description of these two, which is unchanged)
goes through FastAPI as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["DOCS_ASSETS", "PREFIXABLE", "ScorerApp", "unprefixed"]

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

#: Where /docs loads Swagger UI's scripts and styles from.
DOCS_ASSETS = "/docs-assets"
#: Paths served both at the root and under one leading segment (H2O MLOps's deployment id).
PREFIXABLE = ("/model/", "/readyz", "/healthz", "/openapi.json", "/docs", DOCS_ASSETS)


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

    def __init__(self, api: FastAPI, hot: Mapping[str, Endpoint], on_error: ErrorHandler) -> None:
        self.api = api
        self._hot = dict(hot)
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = unprefixed(scope)
            endpoint = self._hot.get(scope["path"]) if scope["method"] == "POST" else None
            if endpoint is not None:
                request = Request(scope, receive)
                try:
                    response = await endpoint(request)
                except Exception as exc:
                    response = await self._on_error(request, exc)
                await response(scope, receive, send)
                return
        await self.api(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI description, which covers the hot endpoints too."""
        return self.api.openapi()
