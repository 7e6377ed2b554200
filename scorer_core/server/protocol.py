"""The HTTP/1.1 connection: uvicorn's httptools protocol with two guards it lacks.

- **A cap on header bytes.** httptools buffers a header however long it is (a 64 MB value was
  accepted), so bytes are counted as they arrive, before the parser sees them, and a request
  whose headers pass ``SCORER_MAX_HEADER_BYTES`` gets 431 and the connection is closed. Memory
  never holds more than the cap plus one read.
- **Pipelined requests keep their answers.** When a valid request is followed on the same
  connection by a malformed one, uvicorn answers the malformed one with 400 and closes at once,
  and the valid one in flight gets no response. Here the 400 waits until every request before it
  has been answered.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]

_HEADERS_END = b"\r\n\r\n"
#: How long a refused connection is read (and discarded) before it is closed.
_LINGER_SECONDS = 2.0


def guarded_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn builds per connection, with this server's header cap."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_bytes = 0
            self._awaiting_headers = True
            self._deferred_400: str | None = None
            self._discarding = False

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
            # uvicorn calls this on a parse error. If requests before the malformed one are still
            # being answered, they are answered first.
            in_flight = self.cycle is not None and not self.cycle.response_complete
            if in_flight or self.pipeline:
                self._deferred_400 = msg
                self.flow.pause_reading()
                return
            super().send_400_response(msg)

        def on_message_begin(self) -> None:
            self._header_bytes = 0
            self._awaiting_headers = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            super().on_headers_complete()

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
            # A lingering close, as nginx does: the client is likely still sending, and closing at
            # once would answer its bytes with a reset that destroys the 431 before it is read.
            self._discarding = True
            self._awaiting_headers = False
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    return GuardedHttpToolsProtocol
