"""One HTTP(S) GET that ends within a total deadline, whatever the other end does.

urllib's ``timeout`` bounds each socket operation, not the exchange: an endpoint that answers one
byte every two seconds never lets a read time out, and holds the caller for as long as it likes
(a red-team pass held the first OIDC token request of a server for 40 s and more that way). So a
watchdog shuts the exchange's socket at the deadline, which ends whatever is waiting on it: the
TLS handshake, a proxy tunnel, the status line, the headers or the body. Name resolution is the
system resolver's and is not covered.

urllib is kept, rather than a bare ``http.client`` connection, so that the proxy settings of the
environment (``HTTPS_PROXY``, ``NO_PROXY``) keep applying as they did.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.request
from typing import Any

__all__ = ["FetchTimeout", "fetch"]


class FetchTimeout(TimeoutError):
    """The whole exchange took longer than its deadline."""


def fetch(url: str, seconds: float, max_bytes: int) -> bytes:
    """The body of ``GET url`` (at most ``max_bytes`` of it), or an exception, within ``seconds``."""
    watchdog = _Watchdog(seconds)
    opener = urllib.request.build_opener(_HTTPHandler(watchdog), _HTTPSHandler(watchdog))
    try:
        with opener.open(url, timeout=seconds) as reply:
            body: bytes = reply.read(max_bytes)
    except Exception as exc:
        if watchdog.expired:
            raise FetchTimeout(f"no complete answer within {seconds:g} s") from exc
        raise
    finally:
        watchdog.close()
    if watchdog.expired:  # shut just as the last read returned: the body may be cut short
        raise FetchTimeout(f"no complete answer within {seconds:g} s")
    return body


class _Watchdog:
    """Holds a duplicate of each socket the exchange opens, and shuts them at the deadline.

    A duplicate, not the socket itself: TLS detaches the original socket object when it wraps it,
    and the duplicate keeps its descriptor ours until ``close``, so the shutdown can never reach a
    descriptor the process has meanwhile reused for something else. Shutting one descriptor of a
    socket shuts the connection for all of them."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def connect(
        self, address: tuple[str, int], timeout: Any = None, source_address: Any = None, **kwargs: Any
    ) -> socket.socket:
        """``socket.create_connection``, with the new socket watched."""
        sock = socket.create_connection(address, timeout, source_address, **kwargs)
        with self._lock:
            if self.expired:
                sock.close()
                raise FetchTimeout("the deadline passed while connecting")
            self._sockets.append(sock.dup())
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # already closed by the other end
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _watched(kind: type[http.client.HTTPConnection], watchdog: _Watchdog) -> Any:
    """A connection class for urllib's ``do_open`` whose sockets the watchdog holds."""

    def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        made = kind(host, **kwargs)
        # http.client opens its socket through this attribute (its own seam); ours registers the
        # socket with the watchdog before TLS or a proxy tunnel uses it.
        made._create_connection = watchdog.connect  # type: ignore[attr-defined]
        return made

    return connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self._watchdog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # No context given: http.client builds its default one, verifying the certificate, as
        # urlopen's own handler does.
        return self.do_open(_watched(http.client.HTTPSConnection, self._watchdog), req)
