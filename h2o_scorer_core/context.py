"""``from h2o_scorer_core.context import request_headers`` works as in H2O's runtime 2.0 guide."""

from __future__ import annotations

from scorer_core.context import forwarded_headers, request_headers

__all__ = ["forwarded_headers", "request_headers"]
