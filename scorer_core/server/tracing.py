"""OpenTelemetry traces of ``/model/*`` requests (``SCORER_TRACING``; the ``otel`` extra).

A request's span continues the client's W3C ``traceparent`` (and ``tracestate``), so that the
scorer shows up inside the caller's trace; under it come the wait for admission, the wait in the
batcher, and the model call its batch took. The last two happen in the batcher's own task, away
from the request, and in a worker process perhaps: they are recorded afterwards, from the times
the batch reports (``Batcher``'s observer), as children of each request's span, with the
batch's size as attributes. The tracing headers themselves still never reach model code
(``config/forwarding.py``): the trace context travels beside the task, not in its headers.

``SCORER_TRACING=otlp`` installs the SDK with an OTLP/HTTP exporter that reads the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` variables; ``on`` uses whatever tracer
provider the process already has (``opentelemetry-instrument``, an embedding application, a
test); ``off`` (the default) costs nothing per request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from scorer_core.errors import ConfigurationError
from scorer_core.execution.isolation import BatchReport
from scorer_core.execution.scoring import ScoringTask
from scorer_core.server.metrics import ENDPOINTS

__all__ = ["TRACING_MODES", "Tracing"]

TRACING_MODES = ("off", "on", "otlp")
#: Span names by endpoint label: the route, as OpenTelemetry's HTTP conventions name server spans.
_SPAN_NAMES = {
    **{label: path for path, label in ENDPOINTS.items()},
    # The Open Inference Protocol's model paths hold a name a client chose: the span says where.
    "oip_infer": "/v2/models/{name}/infer",
    "oip_model_metadata": "/v2/models/{name}",
    "oip_model_ready": "/v2/models/{name}/ready",
}


class Tracing:
    """Spans for the server's requests, from one OpenTelemetry tracer."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_mode(cls, mode: str) -> Tracing | None:
        """The tracing ``SCORER_TRACING`` asks for; a ``ConfigurationError`` if it cannot be had."""
        if mode == "off":
            return None
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigurationError(
                f"SCORER_TRACING={mode} needs OpenTelemetry: pip install 'scorer-core[otel]'"
            ) from None
        if mode == "otlp":
            _install_otlp_exporter()
        return cls(trace.get_tracer("scorer_core"))

    @contextmanager
    def request(self, scope: MutableMapping[str, Any], endpoint: str) -> Iterator[Any]:
        """The span of one request, a child of the client's ``traceparent`` when it sent one.
        Named by its method and ``endpoint`` label (a fixed set), never by the path a client chose;
        a gRPC call (``scope["type"] == "grpc"``) by its service and method, as OpenTelemetry's
        conventions for RPCs name it."""
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
                   if name in (b"traceparent", b"tracestate")}  # fmt: skip
        parent = self._propagator.extract(carrier) if carrier else None
        if scope.get("type") == "grpc":
            service, _, method = scope["path"].lstrip("/").partition("/")
            name = f"{service}/{method}"
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        else:
            name = f"{scope['method']} {_SPAN_NAMES.get(endpoint, '/model/{other}')}"
            attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
        with self._tracer.start_as_current_span(
            name, context=parent, kind=self._trace.SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    def error_status(self) -> Any:
        return self._trace.Status(self._trace.StatusCode.ERROR)

    def current(self) -> Any:
        """The context to carry beside a scoring task, for its batch's spans."""
        return self._context.get_current()

    def span_between(
        self, name: str, start: float, end: float, context: Any = None, **attributes: Any
    ) -> None:
        """A finished span from ``start`` to ``end`` (``time.perf_counter()``), under ``context``
        (the current one when None)."""
        now_ns, now = time.time_ns(), time.perf_counter()
        span = self._tracer.start_span(
            name, context=context, start_time=now_ns - int((now - start) * 1e9), attributes=attributes or None
        )
        span.end(end_time=now_ns - int((now - end) * 1e9))

    def batch(
        self, tasks: Sequence[ScoringTask], waits: list[float], report: BatchReport, started: float
    ) -> None:
        """Each request's wait in the batcher and its batch's model calls, under its own span."""
        calls = sum(seconds for seconds, _ in report.calls)
        rows = sum(task.frame.num_rows for task in tasks)
        for task, wait in zip(tasks, waits, strict=True):
            if task.trace is None:
                continue
            self.span_between("scorer.batch_wait", started - wait, started, task.trace)
            self.span_between(
                "scorer.model_call",
                started,
                started + calls,
                task.trace,
                **{
                    "scorer.batch.requests": len(tasks),
                    "scorer.batch.rows": rows,
                    "scorer.model.calls": len(report.calls),
                },
            )


def _install_otlp_exporter() -> None:
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "SCORER_TRACING=otlp needs the OpenTelemetry SDK and its OTLP exporter: "
            "pip install 'scorer-core[otel]'"
        ) from None
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "scorer"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
