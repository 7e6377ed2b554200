"""The ``cloudevents`` sink: each event posted as two CloudEvents, as KServe's logger posts them.

KServe's InferenceService ``logger`` (``mode: all``) posts each request and each answer as a
CloudEvent 1.0 in binary mode (attributes in ``ce-*`` headers, the payload as the body), typed
``org.kubeflow.serving.inference.request`` and ``.response``, sharing one ``ce-id``, with the
extensions ``inferenceservicename``, ``namespace``, ``component``, ``endpoint`` and ``metadata``.
Posting the same makes KServe's message-dumper, Knative eventing (a broker, a trigger's filter on
``type``) and any CloudEvents SDK read our events unchanged; docs/monitoring.md shows a pair.

It runs in its outbox's thread inside the scoring server, where every microsecond is taken from
the GIL that scoring needs: one keep-alive connection (no per-event TCP or TLS handshake), each
post's head built as one string without an SDK's event objects, bodies by orjson, and the
receiver's answer read by a few lines of code rather than ``http.client`` (``_Connection``).
Connecting waits for the first ``send``, so a receiver that is down never delays the server's
start; a failed connection is dropped and opened again by the next post.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import orjson

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.sinks import Event, SinkError

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE", "CloudEventsSink", "event_id"]

#: The ``ce-type`` of each half, as KServe's logger names them.
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
#: Most bytes of a receiver's answer read (for the error message); a longer one closes the connection.
_MAX_ANSWER = 4096
#: Printable ASCII but ``%``: kept as they are in header values. Space and ``"`` are kept too,
#: though the HTTP binding asks that they be percent-encoded: KServe's Go SDK neither encodes nor
#: decodes them, so its readers would see ``%22`` in every ``ce-metadata``, while a decoding
#: reader reads the plain characters the same (only ``%`` and what HTTP cannot carry are encoded).
_KEPT = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def event_id(event: Event) -> str:
    """The ``ce-id`` of an event's two halves: the request id, and for a request of several
    parts ``<id>#<part>`` (``#`` is never in a request id, so no two requests' ids meet)."""
    request_id: str = event["id"]
    return request_id if event["parts"] == 1 else f"{request_id}#{event['part']}"


@dataclass(frozen=True)
class _Target:
    """Where to post: the URL's parts, checked once."""

    #: The URL as messages show it (no query).
    url: str
    https: bool
    host: str
    port: int
    #: The ``Host`` header's value, and the request's target (path and query).
    netloc: str
    path: str


def _target(url: str | None) -> _Target:
    if not url:
        raise ConfigurationError("SCORER_MONITOR=cloudevents needs SCORER_MONITOR_URL, the receiver's URL")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigurationError(f"SCORER_MONITOR_URL is not a URL: {error}") from None
    if parts.username is not None or parts.password is not None:
        # Refused rather than sent: the URL appears in logs and error messages.
        raise ConfigurationError("SCORER_MONITOR_URL must not hold credentials (user:password@)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"SCORER_MONITOR_URL must be an http:// or https:// URL, got {url!r}")
    if not (url.isascii() and url.isprintable()) or " " in url:
        raise ConfigurationError(
            f"SCORER_MONITOR_URL must be printable ASCII (percent-encode the path), got {url!r}"
        )
    https = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(
        url=f"{parts.scheme}://{parts.netloc}{parts.path}",
        https=https,
        host=parts.hostname,
        port=port or (443 if https else 80),
        netloc=parts.netloc,
        path=path,
    )


def _header_value(text: str) -> str:
    """``text`` as an HTTP header value: ``%``, what is not printable ASCII, and spaces at either
    end (which HTTP would strip) percent-encoded, as the CloudEvents HTTP binding does."""
    if text.isascii() and text.isprintable() and "%" not in text and text.strip(" ") == text:
        return text
    encoded = quote(text, safe=_KEPT)
    inner = encoded.strip(" ")
    lead = len(encoded) - len(encoded.lstrip(" "))
    return "%20" * lead + inner + "%20" * (len(encoded) - lead - len(inner))


def _canonical(name: str) -> str:
    """A header's name as Go's ``http.Header`` keys it (``X-Tenant-Id``): KServe's ``metadata``."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def _rfc3339(iso: str) -> str:
    return iso[:-6] + "Z" if iso.endswith("+00:00") else iso


class CloudEventsSink:
    """Posts each event as a request CloudEvent and a response CloudEvent to one URL."""

    name: ClassVar[str] = "cloudevents"

    def __init__(
        self,
        url: str,
        *,
        namespace: str | None = None,
        host_name: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        target = _target(url)
        if target.https and context is None:
            # The system's CA store; OpenSSL also reads SSL_CERT_FILE and SSL_CERT_DIR here.
            context = ssl.create_default_context()
        self._target = target
        self._connection = _Connection(target, context)
        self._host_name = quote(host_name or socket.gethostname(), safe="")
        # What every post's head starts with, once; the event's own attributes follow.
        common = [
            f"POST {target.path} HTTP/1.1",
            f"host: {target.netloc}",
            "content-type: application/json",
            "ce-specversion: 1.0",
            "ce-component: predictor",
        ]
        if namespace:
            common.append(f"ce-namespace: {_header_value(namespace)}")
        self._common = "\r\n".join(common)
        self._sources: dict[str, str] = {}
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudEventsSink:
        """The sink SCORER_MONITOR_URL names; the namespace is POD_NAMESPACE's, as KServe's."""
        return cls(settings.monitor_url or "", namespace=os.environ.get("POD_NAMESPACE") or None)

    @property
    def url(self) -> str:
        return self._target.url

    def send(self, events: Sequence[Event], timeout: float) -> None:
        """Post each event's two halves, in order; on a failure, the events from the one whose
        pair was not fully posted on are undelivered (its request half may then arrive twice)."""
        deadline = time.monotonic() + timeout
        rejected: list[Event] = []
        refusal: _Failed | None = None
        for index, event in enumerate(events):
            try:
                if self._closed:
                    raise _Failed("the sink is closed")
                for message in self._pair(event):
                    self._connection.post(message, deadline)
            except _Failed as failure:
                if (
                    failure.status is not None
                    and 400 <= failure.status < 500
                    and failure.status not in _RETRIED
                ):
                    # The receiver refuses this event (too large, malformed to it, forbidden):
                    # sending it again changes nothing, and the rest may still be taken.
                    rejected.append(event)
                    refusal = failure
                    continue
                raise SinkError(
                    f"CloudEvents receiver {self._target.url}: {failure}",
                    undelivered=list(events[index:]),
                    rejected=rejected,
                ) from None
        if rejected:
            raise SinkError(
                f"CloudEvents receiver {self._target.url}: {refusal}", undelivered=[], rejected=rejected
            )

    def close(self, timeout: float) -> None:
        self._closed = True
        self._connection.drop()

    def _pair(self, event: Event) -> tuple[bytes, bytes]:
        """The request half's and the response half's HTTP request, head and body."""
        model: Mapping[str, Any] = event["model"]
        status = event["status"]
        source, name = self._source(model["name"])
        shared = (
            f"{self._common}\r\nce-id: {_header_value(event_id(event))}\r\nce-source: {source}\r\n"
            f"ce-inferenceservicename: {name}\r\nce-endpoint: {_header_value(event['endpoint'])}\r\n"
            f"ce-metadata: {_metadata(event['headers'])}\r\nce-status: {status}\r\n"
        )
        request, response = event["request"], event["response"]
        request_data = _json(
            {
                "id": event["id"],
                "part": event["part"],
                "parts": event["parts"],
                "received": event["received"],
                "model": model,
                "deployment": event["deployment"],
                "endpoint": event["endpoint"],
                "fields": request["fields"] if request is not None else None,
                "rows": request["rows"] if request is not None else None,
            }
        )
        response_data = _json(
            {
                "id": event["id"],
                "part": event["part"],
                "parts": event["parts"],
                "status": status,
                "error": event["error"],
                "duration_ms": event["duration_ms"],
                "fields": response["fields"] if response is not None else None,
                "rows": response["rows"] if response is not None else None,
            }
        )
        received: str = event["received"]
        answered = dt.datetime.fromisoformat(received) + dt.timedelta(milliseconds=event["duration_ms"])
        answered_at = _rfc3339(answered.isoformat(timespec="microseconds"))
        return (
            _message(shared, REQUEST_TYPE, _rfc3339(received), request_data),
            _message(shared, RESPONSE_TYPE, answered_at, response_data),
        )

    def _source(self, model_name: str) -> tuple[str, str]:
        """``ce-source`` and ``ce-inferenceservicename`` for a model name, each made once.

        The source is ``http://<host name>/<model name>``: KServe's agent defaults to
        ``http://localhost:<port>/``, which names no one; the pod's host name and the model name
        say which replica of which model sent it."""
        found = self._sources.get(model_name)
        if found is None:
            uri = f"http://{self._host_name}/{quote(model_name, safe='')}"
            found = f"{_header_value(uri)}\n{_header_value(model_name)}"
            self._sources[model_name] = found
        source, _, name = found.partition("\n")
        return source, name


def _message(shared: str, kind: str, time_: str, body: bytes) -> bytes:
    head = f"{shared}ce-type: {kind}\r\nce-time: {time_}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode("ascii") + body


def _metadata(headers: Mapping[str, str]) -> str:
    """The allow-listed request headers as KServe's ``metadata``: JSON, name to list of values."""
    if not headers:
        return "{}"
    shaped = {_canonical(name): [value] for name, value in headers.items()}
    return _header_value(orjson.dumps(shaped, option=orjson.OPT_SORT_KEYS).decode())


class _Connection:
    """One kept HTTP/1.1 connection that posts a request and reads its answer, one at a time.

    Not ``http.client``: its answer parsing (the ``email`` package's header parser) cost about
    150 us of CPU a post here, three quarters of the sink's cost, taken from scoring's GIL. This
    reads only what a receiver's answer needs: the status, and the body's length (``Content-
    Length``, chunked, or up to the close). No pipelining: proxies in front of receivers often
    mishandle it, and one post at a time says exactly which events a failure left undelivered.
    """

    def __init__(self, target: _Target, context: ssl.SSLContext | None) -> None:
        self._target = target
        self._context = context
        self._socket: socket.socket | None = None
        self._buffer = b""

    def post(self, message: bytes, deadline: float) -> None:
        """Send ``message``; return on a 2xx answer, raise ``_Failed`` on anything else. A kept
        connection the receiver closed while it was idle is opened again once (the post is then
        sent again: at least once, as the outbox promises)."""
        for attempt in (1, 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failed("timed out")
            reused = self._socket is not None
            try:
                sock = self._socket or self._open(remaining)
                sock.settimeout(remaining)
                sock.sendall(message)
                status, reason, body, keep = self._answer(sock)
            except (_Stale, OSError, ValueError) as error:
                self.drop()
                # A closed or reset kept connection: the receiver closed it while idle, most likely.
                if reused and attempt == 1 and isinstance(error, (_Stale, ConnectionError)):
                    continue
                raise _Failed(_describe(error)) from None
            if not keep:
                self.drop()
            if not 200 <= status < 300:
                raise _Failed(f"answered {status} {reason}{_snippet(body)}", status)
            return

    def drop(self) -> None:
        sock, self._socket = self._socket, None
        self._buffer = b""
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _open(self, timeout: float) -> socket.socket:
        target = self._target
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        return sock

    def _answer(self, sock: socket.socket) -> tuple[int, str, bytes, bool]:
        """The status, reason and (the start of) the body of the next answer, and whether the
        connection may carry another post. Interim 1xx answers are skipped."""
        while True:
            head = self._until(sock, b"\r\n\r\n", first=True)
            lines = head.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
            status = int(code)
            fields: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if 100 <= status < 200:
                continue
            keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
            if status in (204, 304):
                return status, reason, b"", keep
            if "chunked" in fields.get("transfer-encoding", "").lower():
                return status, reason, self._chunked(sock), keep
            if "content-length" in fields:
                length = int(fields["content-length"])
                if length > _MAX_ANSWER:  # not read: the connection goes
                    return status, reason, b"", False
                return status, reason, self._exactly(sock, length), keep
            return status, reason, self._to_close(sock), False

    def _until(self, sock: socket.socket, mark: bytes, *, first: bool = False) -> bytes:
        """Bytes up to ``mark`` (consumed, not returned). ``first``: the answer's first bytes, so
        a connection closed before any is stale, not a failed post."""
        while True:
            found = self._buffer.find(mark)
            if found >= 0:
                data, self._buffer = self._buffer[:found], self._buffer[found + len(mark) :]
                return data
            if len(self._buffer) > _MAX_ANSWER:
                raise ValueError("the receiver's answer head is too long")
            chunk = sock.recv(65536)
            if not chunk:
                if first and not self._buffer:
                    raise _Stale("the receiver closed the connection")
                raise ConnectionResetError("the receiver closed the connection mid-answer")
            self._buffer += chunk

    def _exactly(self, sock: socket.socket, length: int) -> bytes:
        while len(self._buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the receiver closed the connection mid-answer")
            self._buffer += chunk
        data, self._buffer = self._buffer[:length], self._buffer[length:]
        return data

    def _chunked(self, sock: socket.socket) -> bytes:
        body = b""
        while True:
            size = int(self._until(sock, b"\r\n").split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self._until(sock, b"\r\n"):  # trailers, up to the empty line
                    pass
                return body
            if len(body) + size > _MAX_ANSWER:
                raise ValueError("the receiver's answer is too long")
            body += self._exactly(sock, size + 2)[:size]

    def _to_close(self, sock: socket.socket) -> bytes:
        while len(self._buffer) <= _MAX_ANSWER:
            chunk = sock.recv(65536)
            if not chunk:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:_MAX_ANSWER], b""
        return data


class _Stale(Exception):
    """A kept connection turned out closed before the post's answer began."""


class _Failed(Exception):
    """A post that did not succeed; ``send`` turns it into a SinkError naming the events left.
    ``status``: the receiver's answer, when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


#: The 4xx answers that say "later", not "never": retried like a 5xx.
_RETRIED = frozenset({408, 425, 429})


def _json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, _Stale):
        return str(error)
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


def _snippet(text: bytes) -> str:
    """The start of a receiver's error answer, printable only (it ends up in logs)."""
    shown = "".join(c if c.isprintable() else " " for c in text[:200].decode("utf-8", "replace")).strip()
    return f": {shown}" if shown else ""
