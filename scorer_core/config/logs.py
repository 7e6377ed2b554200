"""How the server and its workers log: text for people, or one JSON object per line for machines.

``SCORER_LOG_FORMAT=json`` is for log pipelines (Loki, Elasticsearch, Cloud Logging) that index
fields: every line, uvicorn's and the plugins' included, becomes an object with ``time``,
``level``, ``logger`` and ``message``, plus the request's ``request_id`` when it was logged while
a request was served, and the access log's fields (``method``, ``path``, ``endpoint``,
``status``, ``duration_ms``, ``rows``, ``client``). A traceback goes in ``exception``, so that a
line stays a line.

Text lines are for terminals and for tools that split records at each line's start, and they carry
what clients and models wrote (a model's error echoes the bad cell it was given): ``TextFormatter``
writes every control character (newline, carriage return, ESC, ...) of a record's line as an escape,
so no text can start a forged record or recolour a terminal, and indents each traceback line, so
that only a record's own first line starts at the margin.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import secrets
from contextvars import ContextVar
from typing import Any

__all__ = [
    "ACCESS_FIELDS",
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "escape_controls",
    "new_request_id",
]

LOG_FORMATS = ("text", "json")
#: The access log's fields, passed as ``extra`` (see ``server/front.py``).
ACCESS_FIELDS = ("method", "path", "endpoint", "status", "duration_ms", "rows", "client")
#: The id of the request being served in this context (None outside a request).
current_request_id: ContextVar[str | None] = ContextVar("scorer_request_id", default=None)
#: New request ids: 16 hex digits, 8 random per process and 8 counted. Unique across processes
#: and restarts as random ids are, at a tenth of their cost: a random id read the kernel's random
#: source on every request, 2% of a loaded server's event loop.
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(secrets.randbelow(2**31))


def new_request_id() -> str:
    """A new request id (when the client sent none)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08x}"


def _new_id_prefix() -> None:
    """A forked process (a worker, a Ray replica) counts from a prefix of its own."""
    global _ID_PREFIX
    _ID_PREFIX = secrets.token_hex(4)


os.register_at_fork(after_in_child=_new_id_prefix)

_UTC = dt.timezone.utc
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators (which some viewers break
#: lines at), each written as the escape Python would write in a string literal.
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
_ESCAPES_BUT_NEWLINE = {code: text for code, text in _ESCAPES.items() if code != ord("\n")}
#: Put in front of every line of a traceback, so that none can pass for the start of a record.
_TRACEBACK_INDENT = "    "


def escape_controls(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``): one line, inert in a
    terminal."""
    return text.translate(_ESCAPES)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` on one line, whatever the message holds; a traceback
    follows on indented lines.

    Escaping here, once, rather than where messages are made, is what makes it hold for every
    logger: ours, uvicorn's, the plugins' and the models' own.
    """

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei), ei[1])

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info), None)


def _indented(text: str, error: BaseException | None) -> str:
    """A traceback's lines, indented, with the control characters of its messages escaped.

    An exception's message is printed as it is, so one holding a newline would put its tail on
    a line of its own: messages are escaped whole first, then any other control character.
    """
    for message in _messages(error):
        if message.translate(_ESCAPES) != message:
            text = text.replace(message, escape_controls(message))
    return "\n".join(
        _TRACEBACK_INDENT + line if line else line
        for line in text.translate(_ESCAPES_BUT_NEWLINE).split("\n")
    )


def _messages(error: BaseException | None) -> list[str]:
    """The messages of ``error`` and of the exceptions it was raised from or while handling."""
    found: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen and len(seen) < 100:
        seen.add(id(error))
        # A message that cannot be made is printed as such by the traceback: nothing to escape.
        with contextlib.suppress(Exception):
            found.append(str(error))
            found.extend(str(note) for note in getattr(error, "__notes__", None) or ())
        error = error.__cause__ or error.__context__
    return found


def configure_logging(level: str, form: str = "text") -> None:
    """The root logger at ``level`` (``trace`` is debug), writing ``form`` to standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if level != "trace" else "DEBUG")
    # uvicorn's loggers carry handlers of their own; through the root they get this format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
