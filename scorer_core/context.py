"""``request_headers``: the forwarded HTTP headers of the requests a model call is scoring.

Model code reads them exactly as H2O's runtime 2.0 guide shows::

    from h2o_scorer_core.context import request_headers

    def predict(self, context, model_input):
        token = request_headers.get({}).get("Authorization", "")
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from scorer_core.headers import ForwardedHeaders

__all__ = ["forwarded_headers", "request_headers"]

#: Set around every model call to the forwarded headers of the requests in that call. Requests are
#: only batched together when these values are equal, so this is always the batch's own headers.
#: Outside a model call it holds an empty mapping.
request_headers: ContextVar[Mapping[str, str]] = ContextVar(
    "request_headers",
    default=ForwardedHeaders(),  # noqa: B039 - ForwardedHeaders is read-only
)


@contextmanager
def forwarded_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """Set ``request_headers`` for the duration of a model call, and always reset it."""
    token = request_headers.set(headers)
    try:
        yield
    finally:
        request_headers.reset(token)
