"""Exceptions raised by scorer_core and its plugins.

Exception tree::

    ScorerError                 base; carries the HTTP status a request failing with it gets
    ├── InvalidRequest          400: the caller's mistake (which field, which row)
    ├── ModelError              500: the model failed; names the runtime
    │   └── RowCountMismatch    500: the model returned another number of rows than it was sent
    ├── UnsupportedOperation    501: the model cannot do this (contributions, media scoring)
    ├── NotReady                503: the model is still loading; carries Retry-After
    ├── Overloaded              503: too many requests in flight; carries Retry-After
    ├── ScoringTimeout          504: the request waited longer than SCORER_REQUEST_TIMEOUT
    └── ConfigurationError      start-up: a setting, a model path or a plugin is wrong
        ├── PluginLoadError     a plugin failed to import or register; names the plugin
        ├── NoRuntimeFound      no installed runtime claims the model path
        └── AmbiguousRuntime    more than one runtime claims the model path
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "AmbiguousRuntime",
    "ConfigurationError",
    "InvalidRequest",
    "ModelError",
    "NoRuntimeFound",
    "NotReady",
    "Overloaded",
    "PluginLoadError",
    "RowCountMismatch",
    "ScorerError",
    "ScoringTimeout",
    "UnsupportedOperation",
]


class ScorerError(Exception):
    """Base class: every error the runtime turns into an HTTP response or a start-up message."""

    status_code: int = 500
    #: Prefix H2O's Java scorer puts in front of the message in the response body.
    detail_prefix: str = ""
    #: Headers the response carries (``WWW-Authenticate``, ``Retry-After``); a subclass or its
    #: ``__init__`` sets its own.
    headers: Mapping[str, str] = MappingProxyType({})
    #: Whether the connection must close after the response: the request's body was left unread
    #: (too large, too slow), so the connection cannot carry another request.
    close_connection: bool = False
    #: Seconds after which a retry may succeed, sent as ``Retry-After``; ``None``: no header.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def detail(self) -> str:
        """The response body's ``detail``: what H2O's clients log when a request fails."""
        return f"{self.detail_prefix}{self.message}"

    def response_headers(self) -> dict[str, str]:
        """Every header the response to this error carries, ``Retry-After`` included."""
        found = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        found.update(self.headers)
        if self.close_connection:
            found["Connection"] = "close"
        return found

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, which default exception pickling loses; errors
        # cross the worker-process boundary, so rebuild them from their attributes instead.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[ScorerError], message: str, state: dict[str, Any]) -> ScorerError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidRequest(ScorerError):
    """The request is malformed or does not fit the model's schema."""

    status_code = 400
    detail_prefix = "Invalid scoring request due to: "


class ModelError(ScorerError):
    """The model raised, or returned something the runtime cannot use."""

    status_code = 500
    detail_prefix = "Failed scoring request due to: "

    def __init__(self, message: str, *, runtime: str) -> None:
        super().__init__(message)
        self.runtime = runtime


class RowCountMismatch(ModelError):
    """The model returned another number of rows than the request sent; never passed on silently."""

    def __init__(self, *, runtime: str, expected: int, actual: int) -> None:
        super().__init__(
            f"Runtime '{runtime}' returned {actual} rows for a request of {expected} rows",
            runtime=runtime,
        )
        self.expected = expected
        self.actual = actual


class UnsupportedOperation(ScorerError):
    """The loaded model does not support the requested operation."""

    status_code = 501


class NotReady(ScorerError):
    """The model has not finished loading; the client may retry after ``retry_after`` seconds
    (None: retrying will not help, as when the model failed to load)."""

    status_code = 503

    def __init__(self, message: str, *, retry_after: int | None = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(ScorerError):
    """Too many requests are in flight; the client should retry after ``retry_after`` seconds."""

    status_code = 503

    def __init__(self, message: str, *, retry_after: int = 1, status_code: int = 503) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status_code = status_code  # 429 when the operator chose it (SCORER_REJECT_STATUS)


class ScoringTimeout(ScorerError):
    """The request was not scored within the configured time; the client may retry."""

    status_code = 504


class ConfigurationError(ScorerError):
    """Start-up cannot continue: a setting, the model path or a plugin is wrong."""


class PluginLoadError(ConfigurationError):
    """A plugin could not be imported or registered."""

    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin


class NoRuntimeFound(ConfigurationError):
    """No installed runtime says it can load the model path."""


class AmbiguousRuntime(ConfigurationError):
    """Several installed runtimes say they can load the model path."""

    def __init__(self, message: str, *, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates
