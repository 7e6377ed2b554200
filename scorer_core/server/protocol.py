"""The HTTP/1.1 connection: uvicorn's httptools protocol with the guards it lacks.

- **A cap on header bytes.** httptools buffers a header however long it is (a 64 MB value was
  accepted), so bytes are counted as they arrive, before the parser sees them, and a request
  whose headers pass ``SCORER_MAX_HEADER_BYTES`` gets 431 and the connection is closed. Memory
  never holds more than the cap plus one read.
- **A malformed chunked body gets 400 at once.** uvicorn finds the broken framing while the app
  waits for the body, and its 400 could not be sent before the request in flight was answered: the
  app waited out ``SCORER_BODY_TIMEOUT`` and answered 408, "send it faster". Here the app's read of
  the body raises ``MalformedBody``, which it answers (and counts) as any other 400.
- **Pipelined requests keep their answers.** When a valid request is followed on the same
  connection by a malformed one, uvicorn answers the malformed one with 400 and closes at once,
  and the valid one in flight gets no response. Here the 400 waits until every request before it
  has been answered.
- **A stop loses no request on a kept-alive connection.** uvicorn closes an idle connection at
  once when the server stops, and a request the client sent at that moment (already in the
  socket buffer, or on its way) is answered with a reset. Here an idle connection stays open a
  moment longer: a request that arrives is answered with ``Connection: close``; if none does, the
  server sends its FIN first and reads (discarding) until the client closes, so a request that
  crossed the FIN finds a closed connection, not a reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scorer_core.errors import InvalidRequest

__all__ = ["MalformedBody", "guarded_protocol"]

_HEADERS_END = b"\r\n\r\n"
#: How long a refused connection is read (and discarded) before it is closed.
_LINGER_SECONDS = 2.0
#: How long an idle connection is kept open, once the server stops, for a request on its way.
#: A busy client sends within milliseconds of its last answer; this bounds how much the idle
#: connections add to a stop.
_IDLE_DRAIN_SECONDS = 1.0
#: How long a closing TLS connection may wait for the client's close_notify before it is aborted.
_TLS_CLOSE_SECONDS = 1.0

Receive = Callable[[], Awaitable[Any]]


class MalformedBody(InvalidRequest):
    """400: the body breaks its chunked framing; the rest of the connection cannot be read."""

    close_connection = True

    def __init__(self) -> None:
        super().__init__(
            "the request body is not valid chunked transfer encoding (Transfer-Encoding: chunked, then "
            "each chunk as its size in hexadecimal, CRLF, its bytes, CRLF, and a last chunk of size 0)"
        )


class _FramedBody:
    """The ``receive`` of a request with a Transfer-Encoding: it raises ``MalformedBody`` once the
    parser has found the framing broken, so that the app answers 400 instead of waiting for bytes
    that will never be parsed."""

    __slots__ = ("_receive", "broken")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.broken = False

    async def __call__(self) -> Any:
        message = await self._receive()
        if self.broken:
            raise MalformedBody()
        return message


def _has_transfer_encoding(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"transfer-encoding" for name, _ in headers)


def guarded_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn builds per connection, with this server's header cap."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_bytes = 0
            self._awaiting_headers = True
            self._framed: _FramedBody | None = None
            self._deferred_400: str | None = None
            self._discarding = False
            self._draining = False
            self._drain_timer: asyncio.TimerHandle | None = None

        def data_received(self, data: bytes) -> None:
            if self._deferred_400 is not None or self._discarding:
                return  # nothing after a malformed or refused request is read
            if self._awaiting_headers:
                end = data.find(_HEADERS_END)
                self._header_bytes += len(data) if end < 0 else end
                if self._header_bytes > max_header_bytes:
                    self._send_431()
                    return
            super().data_received(data)

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
            if not self._awaiting_headers or self._header_bytes:
                return  # a request is arriving; its answer will close the connection
            self._close_lingering()

        def on_message_begin(self) -> None:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            self._header_bytes = 0
            self._awaiting_headers = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            previous = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is previous:
                return  # an upgrade: the connection is no longer HTTP/1.1's
            if self._draining:
                cycle.keep_alive = False
            if _has_transfer_encoding(self.headers):
                self._framed = _FramedBody(cycle.receive)
                cycle.receive = self._framed  # type: ignore[method-assign]
            else:
                self._framed = None

        def on_message_complete(self) -> None:
            self._awaiting_headers = True
            self._header_bytes = 0
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._deferred_400 is not None and not self.pipeline and not self.transport.is_closing():
                in_flight = self.cycle is not None and not self.cycle.response_complete
                if not in_flight:
                    super().send_400_response(self._deferred_400)

        def _send_431(self) -> None:
            message = (
                f"Request header fields are larger than {max_header_bytes} bytes (SCORER_MAX_HEADER_BYTES)"
            ).encode("ascii")
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(message)).encode("ascii") + b"\r\n"
                b"connection: close\r\n\r\n" + message
            )
            # The client is likely still sending, and closing at once would answer its bytes with
            # a reset that destroys the 431 before it is read.
            self._awaiting_headers = False
            self._close_lingering()

        def _close_lingering(self) -> None:
            """Close as nginx does: send FIN, discard what still arrives, close when the client
            does (``eof_received``) or after a bound, so nothing the client sent causes a reset."""
            self._discarding = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
            # Closing a TLS transport waits for the client's close_notify, up to asyncio's 30 s
            # ssl_shutdown_timeout: a client that never answers would hold the stop that long.
            self.loop.call_later(_LINGER_SECONDS + _TLS_CLOSE_SECONDS, self.transport.abort)

    return GuardedHttpToolsProtocol
