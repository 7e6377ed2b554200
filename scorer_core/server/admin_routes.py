"""The admin API (``/admin/model``): replace the served model, roll it back, see what serves.

It exists only when ``SCORER_ADMIN_PASSPHRASE`` is set. A request passes the deployment's
credential gate first (``front``: ``/admin/`` is protected as ``/model/`` is), then needs the
admin passphrase in ``X-Admin-Passphrase``: whoever may score may not therefore load code into
the server, which is what loading a model is. A wrong or missing admin passphrase is answered
after a pause, so that guessing it is slow. What a replacement does is ``service.replacement``'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request, Response

from scorer_core.config.settings import Settings
from scorer_core.errors import InvalidRequest, ScorerError
from scorer_core.server.h2o_routes import Route, json_response
from scorer_core.server.requests import check_content_type, read_body
from scorer_core.service.replacement import ModelReplacement, ReplacementRequest

__all__ = ["ADMIN_HEADER", "ADMIN_ROUTES", "AdminEndpoints", "AdminRefused"]

#: The header carrying the admin passphrase.
ADMIN_HEADER = "X-Admin-Passphrase"
#: The shortest admin passphrase accepted at start-up.
MIN_PASSPHRASE = 16
#: Seconds a refused admin request waits before its answer.
REFUSAL_PAUSE = 1.0
#: The largest body ``POST /admin/model`` reads: a path and a few options.
_BODY_LIMIT = 64 * 1024
#: What ``POST /admin/model`` takes.
_ASKED = 'a JSON object such as {"path": "/models/v2", "runtime": "mlflow", "schema_change": false}'


class AdminRefused(ScorerError):
    """403: the admin passphrase is missing or wrong."""

    status_code = 403


#: Not in the public OpenAPI description: it would tell anyone that the admin API is on.
_ADMIN = {"include_in_schema": False}
ADMIN_ROUTES = (
    Route("GET", "/admin/model", "models", _ADMIN),
    Route("POST", "/admin/model", "replace", _ADMIN),
    Route("POST", "/admin/model/rollback", "rollback", _ADMIN),
)


class AdminEndpoints:
    """The admin routes over one ``ModelReplacement``."""

    def __init__(self, settings: Settings, replacement: ModelReplacement) -> None:
        assert settings.admin_passphrase is not None
        self._digest = hashlib.sha256(settings.admin_passphrase.get_secret_value().encode()).digest()
        self._settings = settings
        self._replacement = replacement

    async def _check(self, request: Request) -> None:
        given = request.headers.get(ADMIN_HEADER)
        # The header's bytes as sent (Starlette decodes them as latin-1), so that a passphrase
        # beyond ASCII matches its UTF-8 spelling. Digests of equal length, compared in constant
        # time: neither the passphrase nor its length leaks through the time an answer takes.
        sent = given.encode("latin-1") if given is not None else None
        if sent is not None and hmac.compare_digest(hashlib.sha256(sent).digest(), self._digest):
            return
        await asyncio.sleep(REFUSAL_PAUSE)
        raise AdminRefused(
            f"the admin passphrase ({ADMIN_HEADER}) is {'wrong' if given is not None else 'missing'}"
        )

    async def models(self, request: Request) -> Response:
        """The model serving, the models kept for rollback, a replacement under way, the last
        failure, and the replacements so far by outcome."""
        await self._check(request)
        return json_response(self._replacement.describe())

    async def replace(self, request: Request) -> Response:
        """Load the model at ``path`` beside the one serving, check and warm it, switch to it,
        then drain and close the old one. Answers once the old one is closed; on any failure
        the old one keeps serving and the answer says why (409, 422, 504)."""
        await self._check(request)
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, _BODY_LIMIT, self._settings.body_timeout, expected=_ASKED)
        asked = replacement_request(body)
        return json_response(await self._replacement.replace(asked))

    async def rollback(self, request: Request) -> Response:
        """Serve the model replaced last again (reloaded from its path, checked to be the same)."""
        await self._check(request)
        return json_response(await self._replacement.rollback())


def replacement_request(body: bytes) -> ReplacementRequest:
    """``POST /admin/model``'s body: a JSON string (the path) or an object; 400 naming what is
    wrong."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON ({exc}); send {_ASKED}") from None
    if isinstance(parsed, str):
        parsed = {"path": parsed}
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"the body is a JSON {type(parsed).__name__}; send {_ASKED}")
    unknown = sorted(set(parsed) - {"path", "runtime", "schema_change", "id"})
    if unknown:
        raise InvalidRequest(f"unknown keys {unknown}; send {_ASKED}")
    path, runtime, change, model_id = (parsed.get(k) for k in ("path", "runtime", "schema_change", "id"))
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise InvalidRequest(f"'path' must be a non-empty string; send {_ASKED}")
    if not Path(path).is_absolute():
        raise InvalidRequest(
            f"'path' must be absolute (the server's working directory is no contract): {path!r}"
        )
    for name, value in (("runtime", runtime), ("id", model_id)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidRequest(f"'{name}' must be a non-empty string when given")
    if model_id is not None and (len(model_id) > 256 or not model_id.isprintable()):
        raise InvalidRequest("'id' must be at most 256 printable characters")
    if change is not None and not isinstance(change, bool):
        raise InvalidRequest("'schema_change' must be true or false")
    return ReplacementRequest(Path(path), runtime, bool(change), model_id)
