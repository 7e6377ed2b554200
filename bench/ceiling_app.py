"""The bare-ASGI ceiling: what uvicorn (httptools, uvloop) serves when the app does no more than
parse the request body with orjson and answer a fixed score. No server that parses JSON in
Python on this machine can beat it; the benchmark reports ours as a share of it.

``uvicorn bench.ceiling_app:app --http httptools --loop uvloop``
"""

from __future__ import annotations

from typing import Any

import orjson

_ANSWER = b'{"id":"ceiling","fields":["label"],"score":[["0"]]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/readyz":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"Ready"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})
