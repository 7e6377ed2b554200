"""One HTTP(S) GET that ends within a total deadline, whatever the other end does.

urllib's ``timeout`` bounds each socket operation, not the exchange: an endpoint that answers one
byte every two seconds never lets a read time out, and holds the caller for as long as it likes
(a red-team pass held the first OIDC token request of a server for 40 s and more that way). So a
watchdog shuts the exchange's socket at the deadline, which ends whatever is waiting on it: the
TLS handshake, a proxy tunnel, the status line, the headers or the body. Name resolution is the
system resolver's and is not covered.

urllib is kept, rather than a bare ``http.client`` connection, so that the proxy settings of the
environment (``HTTPS_PROXY``, ``NO_PROXY``) keep applying as they did. Its opener is built with HTTP
and HTTPS alone, redirects included: ``build_opener``'s default FTP, file and data handlers open
sockets and files the watchdog never sees, and its redirect handler follows ``ftp://``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["FetchTimeout", "fetch"]


class FetchTimeout(TimeoutError):
    """The whole exchange took longer than its deadline."""


def fetch(url: str, seconds: float, max_bytes: int) -> bytes:
    """The body of ``GET url`` (at most ``max_bytes`` of it), or an exception, within ``seconds``."""
    watchdog = _Watchdog(seconds)
    opener = _opener(watchdog)
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


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's opener with only the handlers an HTTP(S) GET needs, every connection watched."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # the environment's proxies, as urlopen uses them
        urllib.request.UnknownHandler(),  # any other scheme: "unknown url type", not opened
        _HTTPHandler(watchdog),
        _HTTPSHandler(watchdog),
        urllib.request.HTTPDefaultErrorHandler(),
        _HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


class _HTTPRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to ``http`` and ``https`` URLs only; anything else is refused by name."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            # http_error_302 has made newurl absolute already, so it has a scheme.
            reason = f"redirected to a {scheme}: URL; only http and https redirects are followed"
            fp.close()  # the redirect's own body, unread, as urllib's handler does once it is followed
            raise urllib.error.HTTPError(req.full_url, code, reason, headers, None)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
