"""Which HTTP headers reach model code: parsing ``H2O_SCORER_FORWARD_HEADERS`` and the tracing blocklist.

Only headers the operator names are forwarded. Tracing and per-request headers are never forwarded,
whatever the configuration says: they differ on every request, so forwarding them would stop
requests from sharing a batch, and model code has no business with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TRACING_HEADERS", "ForwardedHeaders", "HeaderForwarding", "is_tracing_header"]

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


class ForwardedHeaders(dict[str, str]):
    """The forwarded headers, keyed by the names as the operator wrote them, looked up in any case.

    HTTP servers lower-case header names, but model code written from H2O's guide does
    ``headers.get("Authorization", "")``. This is a real ``dict`` (so ``json.dumps`` and pickling
    work) whose lookups ignore case. It is read-only: one mapping may be shared by every request in
    a batch, so a model that edited it would leak into its neighbours.
    """

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self._lower = {key.lower(): key for key in self}

    def _key(self, name: str) -> str:
        return self._lower.get(name.lower(), name)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._key(name) if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(self._key(name), default)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("forwarded headers are read-only; copy them with dict(headers) first")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only
    __ior__ = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset((k.lower(), v) for k, v in self.items()))


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
