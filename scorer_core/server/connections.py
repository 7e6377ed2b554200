"""The HTTP/1.1 connection: uvicorn's httptools protocol with the guards it lacks.

- **A cap on header bytes.** httptools buffers a header however long it is (a 64 MB value was
  accepted), so bytes are counted as they arrive, before the parser sees them, and a request
  whose headers pass ``SCORER_MAX_HEADER_BYTES`` gets 431 and the connection is closed. Memory
  never holds more than the cap plus one read.
- **Deadlines before a request.** uvicorn times nothing before a connection's first request, and
  its keep-alive timer stops at any byte: a socket that sent nothing, or a head dribbled a byte a
  second, was held for ever. Here a new connection whose first request has not started within
  ``SCORER_IDLE_TIMEOUT`` is closed, and so is a kept-alive one whose next request has not
  started within ``SCORER_KEEPALIVE_TIMEOUT`` of the last answer (bytes that start no request,
  such as line ends, extend neither); a request's line and headers must arrive within
  ``SCORER_HEADER_TIMEOUT`` of its first byte, or it gets 408 and the connection is closed.
- **A bound on connections.** Each connection holds a file descriptor. Once the open-file limit is
  reached, accepting fails, for the probes as for everyone else. So the soft limit is raised to
  the hard one at start, and past ``SCORER_MAX_CONNECTIONS`` (by default that limit less a
  reserve) a new connection closes the connection idle longest to make room; when none is idle,
  the new one may ask for ``/healthz`` and ``/readyz`` only, and gets 503 for anything else.
- **A malformed chunked body gets 400 at once.** uvicorn finds the broken framing while the app
  waits for the body, and its 400 could not be sent before the request in flight was answered: the
  app waited out ``SCORER_BODY_TIMEOUT`` and answered 408, "send it faster". Here the app's read of
  the body raises ``MalformedBody``, which it answers (and counts) as any other 400.
- **Pipelined requests keep their answers.** When a valid request is followed on the same
  connection by a malformed one, uvicorn answers the malformed one with 400 and closes at once,
  and the valid one in flight gets no response. Here the 400 waits until every request before it
  has been answered.
- **An answer leaves in one write.** uvicorn writes a response's head (status line and headers)
  and then its body, two system calls and two TCP segments for each answer; on single rows the
  two writes were 12% of the event loop's samples. Here the head is held until the body's first
  part and both are written together (``_HeadWithBody``). A HEAD request's answer, which has no
  body write, is written as uvicorn writes it.
- **A stop loses no request on a kept-alive connection.** uvicorn closes an idle connection at
  once when the server stops, and a request the client sent at that moment (already in the
  socket buffer, or on its way) is answered with a reset. Here an idle connection stays open a
  moment longer: a request that arrives is answered with ``Connection: close``; if none does, the
  server sends its FIN first and reads (discarding) until the client closes, so a request that
  crossed the FIN finds a closed connection, not a reset. A request whose head is still arriving
  at the end of that moment is not waited for: its connection is closed the same way.
"""

from __future__ import annotations

import asyncio
import http
import logging
import math
import resource
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from scorer_core.config.settings import Settings
from scorer_core.errors import InvalidRequest
from scorer_core.server.front import unprefixed

__all__ = [
    "ConnectionLimits",
    "MalformedBody",
    "connection_limits",
    "guarded_protocol",
    "raise_open_file_limit",
]

log = logging.getLogger(__name__)

_HEADERS_END = b"\r\n\r\n"
#: How long a refused connection is read (and discarded) before it is closed.
_LINGER_SECONDS = 2.0
#: How long an idle connection is kept open, once the server stops, for a request on its way.
#: A busy client sends within milliseconds of its last answer; this bounds how much the idle
#: connections add to a stop.
_IDLE_DRAIN_SECONDS = 1.0
#: How long a closing TLS connection may wait for the client's close_notify before it is aborted.
_TLS_CLOSE_SECONDS = 1.0
#: File descriptors kept from connections, at least: the process's own (listener, event loop,
#: logs, the model's files, worker sockets) and the probes' connections when all others are busy.
_RESERVED_FILES = 64
#: The probes a connection past SCORER_MAX_CONNECTIONS may still ask for.
_PROBES = ("/healthz", "/readyz")
#: The most often connection shedding is logged: an attacker must not be able to flood the log.
_WARNING_SECONDS = 60.0

Receive = Callable[[], Awaitable[Any]]
App = Callable[[Any, Any, Any], Awaitable[None]]


class MalformedBody(InvalidRequest):
    """400: the body breaks its chunked framing; the rest of the connection cannot be read."""

    close_connection = True

    def __init__(self) -> None:
        super().__init__(
            "the request body is not valid chunked transfer encoding (Transfer-Encoding: chunked, then "
            "each chunk as its size in hexadecimal, CRLF, its bytes, CRLF, and a last chunk of size 0)"
        )


@dataclass(frozen=True)
class ConnectionLimits:
    """What a connection may hold and for how long; from the settings and the open-file limit."""

    max_header_bytes: int
    header_timeout: float
    idle_timeout: float
    keepalive_timeout: float
    max_connections: int


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit (RLIMIT_NOFILE) to the hard one, and return the limit now in
    force. A process starts with the soft limit, often 1,024, whatever the hard limit allows, and
    each connection holds a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        # macOS reports an unlimited hard limit it then refuses to set: keep what is in force.
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("Could not raise the open-file limit (RLIMIT_NOFILE) from %d to %d: %s", soft, hard, exc)
        return soft
    log.info("Raised the open-file limit (RLIMIT_NOFILE) from %d to %d", soft, hard)
    return hard


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The limits ``scorer serve`` gives each connection, with the open-file limit raised first."""
    open_files = raise_open_file_limit()
    room = max(1, open_files - max(_RESERVED_FILES, open_files // 10))
    chosen = settings.max_connections or room
    if chosen > room:
        log.warning(
            "SCORER_MAX_CONNECTIONS=%d leaves too few of the %d open files the process may have: past "
            "%d connections, new ones (probes included) may be refused",
            chosen,
            open_files,
            room,
        )
    log.info("Connections are capped at %d (SCORER_MAX_CONNECTIONS; open-file limit %d)", chosen, open_files)
    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
        idle_timeout=settings.idle_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        max_connections=chosen,
    )


class _FramedBody:
    """The ``receive`` of a request with a Transfer-Encoding: it raises ``MalformedBody`` once the
    parser has found the framing broken, so that the app answers 400 instead of waiting for bytes
    that will never be parsed."""

    __slots__ = ("_cycle", "broken")

    def __init__(self, cycle: RequestResponseCycle) -> None:
        # Weakly, and the class's receive: held strongly from the cycle it is kept on, it would
        # make a reference cycle of the request, which only the garbage collector frees.
        self._cycle = weakref.ref(cycle)
        self.broken = False

    async def __call__(self) -> Any:
        cycle = _cycle_of(self._cycle)
        message = await type(cycle).receive(cycle)
        if self.broken:
            raise MalformedBody()
        return message


def _cycle_of(own: weakref.ref[RequestResponseCycle]) -> RequestResponseCycle:
    """The cycle a wrapper kept on it was made for: gone only when an app uses its ``send`` or
    ``receive`` after its request has ended, which ASGI forbids."""
    cycle = own()
    if cycle is None:
        raise RuntimeError("ASGI send or receive used after its request ended")
    return cycle


def _has_transfer_encoding(headers: list[tuple[bytes, bytes]]) -> bool:
    # A loop, not any() over a generator, which takes three times as long, on every request.
    for name, _ in headers:  # noqa: SIM110
        if name == b"transfer-encoding":
            return True
    return False


class _Connections:
    """The server's connections with no request under way, idle longest first (a dict keeps the
    order of insertion), and the ones closed to make room that are not gone yet."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.idle: dict[HttpToolsProtocol, None] = {}
        self.shedding: set[HttpToolsProtocol] = set()
        self._shed = 0
        self._limited = 0
        self._warned = -math.inf

    def make_room(self, open_connections: int) -> bool:
        """Past the limit, close the connection idle longest; False when none is idle, so that the
        new connection (already accepted) may only ask for the probes."""
        if open_connections - len(self.shedding) <= self.limit:
            return True
        victim = next(iter(self.idle), None)
        if victim is None:
            self._limited += 1
            self._warn(open_connections)
            return False
        del self.idle[victim]
        self.shedding.add(victim)
        # An abort, not a lingering close: the new connection needs its file descriptor now.
        victim.transport.abort()
        self._shed += 1
        self._warn(open_connections)
        return True

    def waiting(self, connection: HttpToolsProtocol) -> None:
        """``connection`` has no request under way from now on."""
        self.idle.pop(connection, None)
        self.idle[connection] = None

    def busy(self, connection: HttpToolsProtocol) -> None:
        """``connection`` has a request under way: it is not closed to make room."""
        self.idle.pop(connection, None)

    def gone(self, connection: HttpToolsProtocol) -> None:
        self.idle.pop(connection, None)
        self.shedding.discard(connection)

    def _warn(self, open_connections: int) -> None:
        now = time.monotonic()
        if now - self._warned < _WARNING_SECONDS:
            return
        self._warned = now
        log.warning(
            "%d open connections, past SCORER_MAX_CONNECTIONS (%d): since the last such warning, %d of "
            "the longest idle were closed to make room and %d new ones were limited to /healthz and "
            "/readyz (503 for anything else)",
            open_connections,
            self.limit,
            self._shed,
            self._limited,
        )
        self._shed = self._limited = 0


def _probes_only(app: App, limit: int) -> App:
    """``app`` for the probes only: the app of a connection opened past the limit while none could
    be closed to make room. Anything else gets 503 and the connection is closed."""
    body = orjson.dumps(
        {"detail": f"Too many open connections (SCORER_MAX_CONNECTIONS={limit}); retry in a moment"}
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and unprefixed(scope)["path"] in _PROBES:
            await app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return serve


#: The longest body written together with its head; a longer one is written after it, since
#: joining them copies the body, and a copy of more than this costs more than the second write.
_JOINED_BODY_BYTES = 64 * 1024


class _HeadWithBody:
    """One request's transport, as its response cycle sees it: the write of a response's head is
    held and made with the first part of its body, in one system call and, for an answer that
    fits in one, one TCP segment. Everything else is the connection's transport."""

    __slots__ = ("_head", "_holding", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._holding = False
        self._head: bytes | None = None

    def hold_next_write(self) -> None:
        """The next write is a head: keep it for the write after it."""
        self._holding = True

    def write(self, data: bytes) -> None:
        if self._holding:
            self._holding = False
            self._head = data
            return
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= _JOINED_BODY_BYTES:
                self._transport.write(head + data)
                return
            self._transport.write(head)
        self._transport.write(data)

    def flush(self) -> None:
        """Write a head still held (its body's write did not come), unless the connection is
        closing: uvicorn writes nothing once the client has gone, and neither does this."""
        self._holding = False
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _answer_in_one_write(cycle: RequestResponseCycle) -> None:
    """Have ``cycle`` write each answer's head with its body (``_HeadWithBody``). Not for HEAD
    requests: uvicorn makes no write for their body, and completes the response (which may write
    a deferred 400, or close) before a held head could follow. An app that sends its head and
    then waits before its body (a stream) has its head sent with the body's first part; this
    server's own answers send both at once."""
    transport = _HeadWithBody(cycle.transport)
    cycle.transport = transport  # type: ignore[assignment]
    # The cycle is reached through a weak reference, and its class's send: a function kept on
    # the cycle that held the cycle would make a reference cycle of every request, which only
    # the garbage collector frees (a young collection every 200 requests, 8 us a request).
    own = weakref.ref(cycle)
    send = type(cycle).send

    async def send_in_one_write(message: Any) -> None:
        this = _cycle_of(own)
        starts = message["type"] == "http.response.start" and not this.response_started
        if starts:
            transport.hold_next_write()
        try:
            await send(this, message)
        finally:
            if not starts:  # a body's part went out, with the head; or the send failed
                transport.flush()

    cycle.send = send_in_one_write  # type: ignore[method-assign]


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with this server's guards (header bytes, timeouts, the
    connection cap, pipelining and lingering closes); ``guarded_protocol`` gives each server a
    subclass holding its limits and its registry of connections."""

    _limits: ConnectionLimits
    _registry: _Connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn arms its keep-alive timer after each answer; on_response_complete takes it
        # over as the deadline for the next request, which saves a second timer per request.
        self.timeout_keep_alive = self._limits.keepalive_timeout  # type: ignore[assignment]
        self._header_bytes = 0
        #: The last bytes of the previous read, so that a head's end split across two reads
        #: is still found (else a large body behind it would count as header bytes: a 431).
        self._head_tail = b""
        self._awaiting_headers = True
        self._in_head = False
        self._timer: asyncio.TimerHandle | None = None
        self._framed: _FramedBody | None = None
        self._deferred_400: str | None = None
        self._discarding = False
        self._draining = False
        self._drain_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._registry.make_room(len(self.connections)):
            self.app = _probes_only(self.app, self._limits.max_connections)
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._registry.gone(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deferred_400 is not None or self._discarding:
            return  # nothing after a malformed or refused request is read
        if self._awaiting_headers:
            window = self._head_tail + data
            end = window.find(_HEADERS_END)
            self._header_bytes += len(data) if end < 0 else max(0, end - len(self._head_tail))
            self._head_tail = window[-(len(_HEADERS_END) - 1) :] if end < 0 else b""
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(
                    431,
                    f"Request header fields are larger than {self._limits.max_header_bytes} bytes "
                    "(SCORER_MAX_HEADER_BYTES)",
                )
                return
        super().data_received(data)
        # Armed here, not at the head's first byte, so that a head arriving whole (nearly
        # every one) never starts a timer.
        settled = self._discarding or self._deferred_400 is not None or self.transport.is_closing()
        if self._in_head and self._timer is None and not settled:
            self._timer = self.loop.call_later(self._limits.header_timeout, self._head_expired)

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this on a parse error.
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._body_malformed()
            return
        # If requests before the malformed one are still being answered, they are answered first.
        in_flight = cycle is not None and not cycle.response_complete
        if in_flight or self.pipeline:
            self._deferred_400 = msg
            self._cancel_timer()
            self.flow.pause_reading()
            return
        super().send_400_response(msg)

    def _body_malformed(self) -> None:
        """The body being read breaks its framing (only a chunked body can): its request is
        answered by the app, through ``MalformedBody``, and the connection closes after it."""
        self.cycle.keep_alive = False
        self._discarding = True  # read on, so that closing sends a FIN rather than a reset
        framed = self._framed
        if framed is not None:
            framed.broken = True
            self.cycle.message_event.set()

    def shutdown(self) -> None:
        # Called by uvicorn once the listener is closed, for every open connection.
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # the answer says Connection: close
            return
        self._draining = True
        self._unset_keepalive_if_required()
        self._drain_timer = self.loop.call_later(_IDLE_DRAIN_SECONDS, self._close_idle)

    def _close_idle(self) -> None:
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request came and is answered with Connection: close
        # Idle, or a head still arriving: a request not whole by now is not waited for.
        self._close_lingering()

    def on_message_begin(self) -> None:
        # The bytes counted are kept: this read, which starts the head, counts towards it.
        self._cancel_timer()
        self._in_head = True
        self._awaiting_headers = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._in_head = False
        self._cancel_timer()
        self._registry.busy(self)
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is previous:
            return  # an upgrade: the connection is no longer HTTP/1.1's
        if self._draining:
            cycle.keep_alive = False
        if cycle.scope["method"] != "HEAD":
            _answer_in_one_write(cycle)
        if _has_transfer_encoding(self.headers):
            self._framed = _FramedBody(cycle)
            cycle.receive = self._framed  # type: ignore[method-assign]
        else:
            self._framed = None

    def on_message_complete(self) -> None:
        self._awaiting_headers = True
        self._header_bytes = 0
        self._head_tail = b""
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._deferred_400 is not None:
            if not self.pipeline and (self.cycle is None or self.cycle.response_complete):
                super().send_400_response(self._deferred_400)
            return
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            return  # the next request is under way
        self._registry.waiting(self)
        if self._in_head:  # the next head has begun: its own deadline runs
            self._unset_keepalive_if_required()
            return
        # uvicorn's keep-alive timer, just armed, is taken out of its hands: uvicorn stops it
        # at any byte, even one that starts no request; here only a request's start does.
        self._cancel_timer()
        self._timer, self.timeout_keep_alive_task = self.timeout_keep_alive_task, None

    def timeout_keep_alive_handler(self) -> None:
        self._idle_expired()

    def _wait_for_request(self) -> None:
        """Arm the deadline for a new connection's first request."""
        self._registry.waiting(self)
        self._cancel_timer()
        self._timer = self.loop.call_later(self._limits.idle_timeout, self._idle_expired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_expired(self) -> None:
        self._timer = None
        if not self._in_head and (self.cycle is None or self.cycle.response_complete):
            self._close_lingering()

    def _head_expired(self) -> None:
        self._timer = None
        if not self._in_head or self._deferred_400 is not None:
            return
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            # The head follows a request still being answered, whose answer ends the connection.
            self.cycle.keep_alive = False
            self._discarding = True
            return
        self._refuse(
            408,
            f"The request line and headers did not arrive within {self._limits.header_timeout:g} s "
            "(SCORER_HEADER_TIMEOUT)",
        )

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` before a request has reached the app, and close."""
        body = message.encode("ascii")
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, phrase) + b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        # The client may still be sending, and closing at once would answer its bytes with a
        # reset that destroys the answer before it is read.
        self._awaiting_headers = False
        self._in_head = False
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Close as nginx does: send FIN, discard what still arrives, close when the client
        does (``eof_received``) or after a bound, so nothing the client sent causes a reset."""
        self._cancel_timer()
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        # Closing a TLS transport waits for the client's close_notify, up to asyncio's 30 s
        # ssl_shutdown_timeout: a client that never answers would hold the stop that long.
        self.loop.call_later(_LINGER_SECONDS + _TLS_CLOSE_SECONDS, self.transport.abort)


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn builds per connection, with this server's limits."""
    attributes = {"_limits": limits, "_registry": _Connections(limits.max_connections)}
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), attributes)
