"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), beside HTTP.

A second front on the same ``DataPlane`` as the HTTP app, not a second server: the same model,
batcher (a gRPC request merges with REST and H2O ones of equal forwarded headers), admission,
deadline, credential (``Authenticator``) and metrics. Only spelling lives here, as in
``oip_routes``: messages to ``wire.oip``'s requests (``wire.oip_grpc``), answers to messages, and
each ``ScorerError`` to the gRPC status of its HTTP status, with the message REST sends.

The server is grpc.aio's, started by the app's lifespan on uvicorn's event loop, since the batcher
and admission are bound to that loop (grpc.aio runs on uvloop too, which uvicorn picks when it is
installed). It is stopped gracefully by the lifespan's end: calls in flight get
SCORER_SHUTDOWN_GRACE to finish.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorer_core import __version__
from scorer_core.config.logs import current_request_id
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError, ModelError, NotReady, ScorerError
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringResult
from scorer_core.server.auth import Authenticator
from scorer_core.server.front import ROWS_KEY, log_access, request_id_of
from scorer_core.server.h2o_routes import OFF_LOOP_BYTES
from scorer_core.server.metrics import ScorerMetrics
from scorer_core.server.oip_routes import check_version, model_metadata, named_model
from scorer_core.server.tracing import Tracing
from scorer_core.service.plane import DataPlane
from scorer_core.service.scored import Arrival, current_arrival
from scorer_core.service.tasks import PreparedRequest, prepare_infer
from scorer_core.wire.oip import InferRequest

__all__ = ["ENDPOINTS", "INSTALL_HINT", "GrpcFront"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'scorer-core[grpc]'"

#: Each method's ``endpoint`` label in ``scorer_requests_total`` (a fixed set: docs/metrics.md),
#: and whether it needs the deployment's credential (the probes stay open, as over HTTP).
ENDPOINTS: dict[str, tuple[str, bool]] = {
    "ServerLive": ("grpc_live", False),
    "ServerReady": ("grpc_ready", False),
    "ModelReady": ("grpc_model_ready", True),
    "ServerMetadata": ("grpc_server_metadata", True),
    "ModelMetadata": ("grpc_model_metadata", True),
    "ModelInfer": ("grpc_infer", True),
}

#: The gRPC status of each HTTP status a ``ScorerError`` carries; any other is INTERNAL.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",  # SCORER_REJECT_STATUS=429, or too many passphrase checks
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: What a call the client abandoned (cancelled, or past its own deadline) is counted as.
_CLIENT_CLOSED = 499


def _peer(peer: str) -> tuple[str, int] | None:
    """The address and port of grpc's peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6") or not rest:
        return None
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def _check_port_free(host: str, port: int) -> None:
    """``ConfigurationError`` now, before anything listens or loads, when the port is taken: grpc
    would say so only once the app starts, in words of its own and with a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as the HTTP listener decides
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"Port {port} on {host} is already in use; choose another with SCORER_GRPC_PORT"
                ) from None
            raise ConfigurationError(
                f"Cannot serve gRPC on {host}:{port} (SCORER_HOST, SCORER_GRPC_PORT): {exc.strerror or exc}"
            ) from None


@dataclass
class _Call:
    """What a handler needs of the call beyond its message: its headers (the metadata), and the
    scope its span and access-log line are made from (an HTTP request's, in gRPC's terms)."""

    headers: dict[str, str]
    scope: dict[str, Any]


class GrpcFront:
    """The gRPC server of one app; ``start()`` and ``stop()`` from the app's lifespan.

    Built when the app is (``ConfigurationError`` before anything listens: grpcio missing, the
    port SCORER_PORT's)."""

    def __init__(
        self,
        settings: Settings,
        plane: DataPlane,
        metrics: ScorerMetrics,
        auth: Authenticator | None,
        problem: Callable[[str], str | None],
        *,
        tracing: Tracing | None = None,
        access_log: bool = False,
        monitored: bool = False,
    ) -> None:
        try:
            import grpc  # noqa: F401

            from scorer_core.wire import oip_proto
        except ImportError as exc:
            raise ConfigurationError(
                f"SCORER_GRPC_PORT is set, but gRPC needs packages that are not installed ({exc.name}): "
                f"{INSTALL_HINT}"
            ) from None
        assert settings.grpc_port is not None
        if settings.grpc_port == settings.port:
            raise ConfigurationError(
                f"SCORER_GRPC_PORT is {settings.grpc_port}, the HTTP port (SCORER_PORT / --port); "
                "gRPC needs a port of its own"
            )
        _check_port_free(settings.host, settings.grpc_port)
        self._settings = settings
        self._plane = plane
        self._metrics = metrics
        self._auth = auth
        self._problem = problem
        self._tracing = tracing
        self._access_log = access_log
        #: Monitoring on: each call gets an id (the client's ``x-request-id`` metadata when it is a
        #: plain token) and an ``Arrival``, as HTTP requests do.
        self._monitored = monitored
        self._messages = oip_proto.messages()
        self._server: Any = None

    @property
    def address(self) -> str:
        host = self._settings.host
        return f"[{host}]:{self._settings.grpc_port}" if ":" in host else f"{host}:{self._settings.grpc_port}"

    async def start(self) -> None:
        """Listen and serve, on the running event loop; ``ConfigurationError`` when the port
        cannot be had."""
        import grpc

        from scorer_core.wire.oip_proto import METHODS, PACKAGE, SERVICE

        settings = self._settings
        server = grpc.aio.server(
            options=[
                # grpc's default lets a second server share the port: a port in use must fail.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", settings.max_request_bytes),
                ("grpc.max_send_message_length", -1),
            ]
        )
        handlers = {}
        for method, request, response in METHODS:
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._handler(method),
                request_deserializer=self._messages[request].FromString,
                response_serializer=self._messages[response].SerializeToString,
            )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(f"{PACKAGE}.{SERVICE}", handlers),)
        )
        tls = settings.tls()
        try:
            if tls is None:
                server.add_insecure_port(self.address)
            else:
                cert, key = (Path(path).read_bytes() for path in tls)  # checked by settings.tls()
                server.add_secure_port(self.address, grpc.ssl_server_credentials([(key, cert)]))
        except RuntimeError as exc:
            raise ConfigurationError(
                f"Cannot serve gRPC on {self.address} (SCORER_GRPC_PORT): {exc}; is the port in use?"
            ) from None
        await server.start()
        self._server = server
        log.info(
            "Listening for gRPC (Open Inference Protocol) on %s%s", self.address, " with TLS" if tls else ""
        )

    async def stop(self, grace: float) -> None:
        """Refuse new calls, and give those in flight ``grace`` seconds to finish."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    def _handler(self, method: str) -> Callable[[Any, Any], Awaitable[Any]]:
        """The method's handler: the credential, the call (in its span), its status, its metrics
        and its access-log line, as the HTTP front gives a request."""
        import grpc

        from scorer_core.wire.oip_proto import PACKAGE, SERVICE

        endpoint, protected = ENDPOINTS[method]
        call: Callable[[Any, _Call], Awaitable[Any]] = getattr(self, f"_{method}")
        metrics = self._metrics
        path = f"/{PACKAGE}.{SERVICE}/{method}"

        async def handle(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            code = 200
            metadata = context.invocation_metadata() or ()
            headers: dict[str, str] = {}
            for key, value in metadata:
                if isinstance(value, str):  # "-bin" keys carry bytes: no header of any client's
                    headers.setdefault(key, value)
            peer = _peer(context.peer())
            scope: dict[str, Any] = {
                "type": "grpc",
                "method": "POST",
                "path": path,
                "headers": [
                    (k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                    for k, v in headers.items()
                ],
                "client": peer,
            }
            request_id = request_id_of(scope) if self._access_log or self._monitored else None
            token = current_request_id.set(request_id) if request_id is not None else None
            arrival = current_arrival.set(Arrival(time.time())) if self._monitored else None
            try:
                if protected and self._auth is not None:
                    await self._auth.check(
                        [value.encode("latin-1") for key, value in metadata if key == "authorization"],
                        peer[0] if peer else None,
                    )
                return await self._traced(call, request, _Call(headers, scope), endpoint)
            except ScorerError as exc:
                code = exc.status_code
                metrics.rejected(exc)
                if isinstance(exc, ModelError):
                    log.error("gRPC %s failed: %s", method, exc.message)
                trailing = [(k.lower(), v) for k, v in exc.response_headers().items() if k != "Connection"]
                if trailing:
                    context.set_trailing_metadata(trailing)
                status = getattr(grpc.StatusCode, _STATUS_NAMES.get(code, "INTERNAL"))
                await context.abort(status, exc.message)
            except grpc.aio.AbortError:
                raise
            except BaseException as exc:
                if not isinstance(exc, Exception):  # cancelled: the client left or its deadline passed
                    code = _CLIENT_CLOSED
                    raise
                code = 500
                log.exception("gRPC %s failed unexpectedly", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            finally:
                seconds = time.perf_counter() - started
                metrics.request(endpoint, code, seconds)
                if request_id is not None and self._access_log:
                    log_access(scope, endpoint, code, seconds, request_id)
                if token is not None:
                    current_request_id.reset(token)
                if arrival is not None:
                    current_arrival.reset(arrival)

        return handle

    async def _traced(
        self, call: Callable[[Any, _Call], Awaitable[Any]], request: Any, info: _Call, endpoint: str
    ) -> Any:
        """The call in its span (after the credential, as over HTTP: an anonymous client neither
        joins a trace nor makes a span), marked failed when it fails as a 5xx would."""
        tracing = self._tracing
        if tracing is None:
            return await call(request, info)
        with tracing.request(info.scope, endpoint) as span:
            status = 200
            try:
                return await call(request, info)
            except ScorerError as exc:
                status = exc.status_code
                raise
            except Exception:
                status = 500
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                if ROWS_KEY in info.scope:
                    span.set_attribute("scorer.rows", info.scope[ROWS_KEY])
                if status >= 500:
                    span.set_status(tracing.error_status())

    def _response(self, message: str, **fields: Any) -> Any:
        return self._messages[message](**fields)

    async def _ServerLive(self, request: Any, call: _Call) -> Any:
        return self._response("ServerLiveResponse", live=self._problem("live") is None)

    async def _ServerReady(self, request: Any, call: _Call) -> Any:
        return self._response("ServerReadyResponse", ready=self._problem("ready") is None)

    async def _ModelReady(self, request: Any, call: _Call) -> Any:
        problem = self._problem("ready")
        try:
            named_model(self._plane, request.name, request.version or None)
        except NotReady:
            return self._response("ModelReadyResponse", ready=False)
        return self._response("ModelReadyResponse", ready=problem is None)

    async def _ServerMetadata(self, request: Any, call: _Call) -> Any:
        # REST's one extension, binary tensor data, is gRPC's ordinary raw contents.
        return self._response(
            "ServerMetadataResponse", name="scorer_core", version=__version__, extensions=[]
        )

    async def _ModelMetadata(self, request: Any, call: _Call) -> Any:
        facts = named_model(self._plane, request.name, request.version or None)
        return self._response("ModelMetadataResponse", **model_metadata(facts))

    async def _ModelInfer(self, request: Any, call: _Call) -> Any:
        from scorer_core.wire.oip_grpc import infer_request, infer_response, raw_bytes

        plane = self._plane
        plane.check_capacity()
        named_model(plane, request.model_name, request.model_version or None)
        off_loop = raw_bytes(request) >= OFF_LOOP_BYTES
        parsed: list[InferRequest] = []
        response_class = self._messages["ModelInferResponse"]

        def prepare(facts: ModelFacts) -> PreparedRequest:
            check_version(facts, request.model_version or None)
            infer = infer_request(request)
            prepared = prepare_infer(infer, facts, keep_cells=not off_loop)
            parsed.append(infer._replace(inputs=()))  # the answer needs no tensor (see oip_routes)
            return prepared

        def answer(facts: ModelFacts, prepared: PreparedRequest, result: ScoringResult) -> Any:
            assert result.outputs is not None
            return infer_response(
                response_class,
                facts.model_name,
                facts.model_version,
                parsed[0],
                facts.schema.outputs,
                result.outputs,
            )

        self._metrics.in_flight.inc()
        try:
            async with plane.slot() as deadline:
                return await plane.score(
                    prepare,
                    answer,
                    deadline=deadline,
                    headers=call.headers,
                    outputs=True,
                    off_loop=off_loop,
                    rows=lambda count: call.scope.__setitem__(ROWS_KEY, count),
                    endpoint="grpc_infer",
                )
        finally:
            self._metrics.in_flight.dec()
