"""A CloudEvents receiver for tests: a threaded HTTP/1.1 server on 127.0.0.1 that reads each POST
with the ``cloudevents`` SDK (its 2.x ``core`` API: binary or structured mode, header values
percent-decoded as the HTTP binding says) and keeps the events and the raw requests.

It can be told to answer another status (``answer = 503``, or only from a post on:
``refuse_after``), to stall (``stall()`` until ``release()``), to serve HTTPS (``tls``), and
stopped and started again on the same port; stopping also closes the keep-alive connections it
holds, as a receiver that went down would.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

#: Longest a stalled request waits to be released (a test that forgets cannot hang the suite).
STALL_LIMIT = 60.0


class Receiver:
    """``with Receiver() as receiver:``; ``receiver.url`` takes posts, ``receiver.events`` holds them."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls
        self.answer = 200
        #: Events taken, after which every post is refused with 503 (None: never).
        self.refuse_after: int | None = None
        #: The ``ce-id``s of events refused with 413, as too large, whenever they come.
        self.too_large: set[str] = set()
        #: The client's (host, port) of each post taken: one port for one kept connection.
        self.peers: list[tuple[str, int]] = []
        self._up = False
        self.events: list[BaseCloudEvent] = []
        #: Each POST as it came: lower-cased headers and the body.
        self.requests: list[tuple[dict[str, str], bytes]] = []
        #: Posts the SDK could not read (answered 400), with the SDK's message.
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._released = threading.Event()
        self._released.set()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/events"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a sink's persistent connection expects

            def setup(self) -> None:
                super().setup()
                with receiver._changed:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._changed:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._released.wait(STALL_LIMIT)
                if not receiver._up:  # stopped while this post stalled: no answer, nothing kept
                    self.close_connection = True
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._changed:
                    refused = (
                        receiver.refuse_after is not None and len(receiver.events) >= receiver.refuse_after
                    )
                status = 503 if refused else receiver.answer
                if headers.get("ce-id") in receiver.too_large:
                    status = 413
                try:
                    event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
                except Exception as error:  # the SDK's refusal is what the test reads
                    event, status = None, 400
                    with receiver._changed:
                        receiver.errors.append(f"{type(error).__name__}: {error}")
                if event is not None and status < 300:
                    with receiver._changed:
                        receiver.requests.append((headers, body))
                        receiver.peers.append(self.client_address[:2])
                        receiver.events.append(event)
                        receiver._changed.notify_all()
                answer = b"" if status < 300 else b"refused by the test receiver"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._up = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ce-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection: posts fail until ``start`` again."""
        server, self._server = self._server, None
        if server is None:
            return
        self._up = False
        server.shutdown()
        server.server_close()
        self._released.set()
        with self._changed:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        assert self._thread is not None
        self._thread.join(10)

    def stall(self) -> None:
        """Hold each new post unanswered until ``release`` (or ``STALL_LIMIT``)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[BaseCloudEvent]:
        """The events once at least ``count`` have arrived; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.events)} of {count} events arrived within {timeout:g} s"
                self._changed.wait(left)
            return list(self.events)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
