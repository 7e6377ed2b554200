"""A scoring POST's body: its declared type checked, then read within its size and time limits.

HTTP's part of a request only; what the body means is checked in ``service/tasks.py``.
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from scorer_core.errors import InvalidRequest
from scorer_core.execution.timeouts import within

__all__ = ["BodyTimeout", "BodyTooLarge", "UnsupportedMediaType", "check_content_type", "read_body"]


#: Media types a scoring POST may declare. A missing Content-Type is accepted, as H2O's clients
#: have not always sent one; any other type is refused with 415 before the body is read.
_JSON_TYPES = ("application/json",)


def check_content_type(content_type: str | None) -> None:
    """Raise ``UnsupportedMediaType`` (415) unless the body is declared JSON or not declared."""
    if content_type is None or not content_type.strip():
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _JSON_TYPES or (media_type.startswith("application/") and media_type.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"Content-Type '{media_type}' is not supported; send the body as application/json"
    )


class UnsupportedMediaType(InvalidRequest):
    """415: the body is declared as something other than JSON (a form, a file)."""

    status_code = 415


class BodyTooLarge(InvalidRequest):
    """413: the body is larger than ``SCORER_MAX_REQUEST_BYTES``; the connection is closed."""

    status_code = 413
    close_connection = True

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes (SCORER_MAX_REQUEST_BYTES)")


class BodyTimeout(InvalidRequest):
    """408: the body did not arrive within ``SCORER_BODY_TIMEOUT``; the connection is closed."""

    status_code = 408
    close_connection = True

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the request body did not arrive within {timeout:g} s (SCORER_BODY_TIMEOUT); send it faster"
        )


#: What an empty body's 400 asks for, by protocol.
H2O_BODY = "a JSON object with 'fields' and 'rows'"
OIP_BODY = "a JSON object with 'inputs'"


def decoded(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` with its ``Content-Encoding`` undone (gzip or deflate, as tritonclient can send),
    never past ``limit`` bytes decoded (413: a small body can inflate a thousandfold); 415 for
    any other encoding."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the body as is, or gzip or deflate"
        )
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if name == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"the body is not valid {name} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    if not inflater.eof:
        raise InvalidRequest(f"the body's {name} data ends early")
    return out


async def read_body(request: Request, limit: int, timeout: float, *, expected: str = H2O_BODY) -> bytes:
    """The request body, read as it streams in: 413 as soon as it passes ``limit`` bytes (never
    buffered whole first, chunked or not), 408 when it takes longer than ``timeout``, 400 when
    empty (saying that ``expected`` should be sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    try:
        body = await within(_read_within(request, limit), timeout)
    except TimeoutError:
        raise BodyTimeout(timeout) from None
    if not body:
        raise InvalidRequest(f"the request body is empty; send {expected}")
    return body


async def _read_within(request: Request, limit: int) -> bytes:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise BodyTooLarge(limit)
    return bytes(received)
