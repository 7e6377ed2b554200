"""How the server and its workers log: text for people, or one JSON object per line for machines.

``SCORER_LOG_FORMAT=json`` is for log pipelines (Loki, Elasticsearch, Cloud Logging) that index
fields: every line, uvicorn's and the plugins' included, becomes an object with ``time``,
``level``, ``logger`` and ``message``, plus the request's ``request_id`` when it was logged while
a request was served, and the access log's fields (``method``, ``path``, ``endpoint``,
``status``, ``duration_ms``, ``rows``, ``client``). A traceback goes in ``exception``, so that a
line stays a line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from contextvars import ContextVar
from typing import Any

__all__ = ["ACCESS_FIELDS", "LOG_FORMATS", "JsonFormatter", "configure_logging", "current_request_id"]

LOG_FORMATS = ("text", "json")
#: The access log's fields, passed as ``extra`` (see ``server/front.py``).
ACCESS_FIELDS = ("method", "path", "endpoint", "status", "duration_ms", "rows", "client")
#: The id of the request being served in this context (None outside a request).
current_request_id: ContextVar[str | None] = ContextVar("scorer_request_id", default=None)

_UTC = dt.timezone.utc
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def configure_logging(level: str, form: str = "text") -> None:
    """The root logger at ``level`` (``trace`` is debug), writing ``form`` to standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(_TEXT))
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
