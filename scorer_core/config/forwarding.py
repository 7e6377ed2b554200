"""Which HTTP headers reach model code: parsing ``H2O_SCORER_FORWARD_HEADERS`` and the tracing blocklist.

Only headers the operator names are forwarded. Tracing and per-request headers are never forwarded,
whatever the configuration says: they differ on every request, so forwarding them would stop
requests from sharing a batch, and model code has no business with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scorer_core.headers import ForwardedHeaders

__all__ = ["TRACING_HEADERS", "HeaderForwarding", "is_tracing_header"]

#: Lower-case names of headers that are never forwarded to model code.
TRACING_HEADERS = frozenset(
    {
        "x-request-id",
        "x-correlation-id",
        "correlation-id",
        "request-id",
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "uber-trace-id",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "grpc-trace-bin",
        "sentry-trace",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
        "x-datadog-origin",
        "x-ot-span-context",
        "x-envoy-external-address",
        "x-envoy-attempt-count",
        "x-envoy-expected-rq-timeout-ms",
    }
)
#: Prefixes of header families that are never forwarded (Zipkin B3, Jaeger baggage).
TRACING_HEADER_PREFIXES = ("x-b3-", "uberctx-", "ot-baggage-")


def is_tracing_header(name: str) -> bool:
    """True for tracing and per-request headers, which are never forwarded."""
    lowered = name.strip().lower()
    return lowered in TRACING_HEADERS or lowered.startswith(TRACING_HEADER_PREFIXES)


@dataclass(frozen=True)
class HeaderForwarding:
    """The parsed forwarding rule: which header names reach model code, spelled as configured."""

    names: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()

    @classmethod
    def parse(cls, configured: str | None) -> HeaderForwarding:
        """Parse a comma-separated list: case-insensitive, whitespace and empty entries ignored."""
        names: list[str] = []
        blocked: list[str] = []
        seen: set[str] = set()
        for raw in (configured or "").split(","):
            name = raw.strip()
            if not name or name.lower() in seen:
                continue
            seen.add(name.lower())
            (blocked if is_tracing_header(name) else names).append(name)
        return cls(tuple(names), tuple(blocked))

    def warnings(self) -> list[str]:
        """Start-up warnings, one per configured header that the blocklist drops."""
        return [
            f"H2O_SCORER_FORWARD_HEADERS names '{name}', a tracing header that is never "
            "forwarded; ignoring it"
            for name in self.blocked
        ]

    def select(self, headers: Mapping[str, str]) -> ForwardedHeaders:
        """The configured headers present in a request (``headers`` keyed in lower case)."""
        if not self.names:
            return _EMPTY
        return ForwardedHeaders(
            (name, headers[name.lower()]) for name in self.names if name.lower() in headers
        )


_EMPTY = ForwardedHeaders()
