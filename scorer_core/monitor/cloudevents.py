"""The ``cloudevents`` sink: each event posted as two CloudEvents, as KServe's logger posts them.

KServe's InferenceService ``logger`` (``mode: all``) posts each request and each answer as a
CloudEvent 1.0 in binary mode (attributes in ``ce-*`` headers, the payload as the body), typed
``org.kubeflow.serving.inference.request`` and ``.response``, sharing one ``ce-id``, with the
extensions ``inferenceservicename``, ``namespace``, ``component``, ``endpoint`` and ``metadata``.
Posting the same makes KServe's message-dumper, Knative eventing (a broker, a trigger's filter on
``type``) and any CloudEvents SDK read our events unchanged; docs/monitoring.md shows a pair.

It runs in its outbox's thread inside the scoring server, where every microsecond is taken from
the GIL that scoring needs: one keep-alive connection (``http.client``, no per-event TCP or TLS
handshake), headers built from strings without an SDK's event objects, bodies by orjson.
Connecting waits for the first ``send``, so a receiver that is down never delays the server's
start; a failed connection is dropped and opened again by the next post.
"""

from __future__ import annotations

import datetime as dt
import http.client
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

    url: str
    https: bool
    host: str
    port: int | None
    path: str


def _target(url: str | None) -> _Target:
    if not url:
        raise ConfigurationError("SCORER_MONITOR=cloudevents needs SCORER_MONITOR_URL, the receiver's URL")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise ConfigurationError(f"SCORER_MONITOR_URL is not a URL: {error}") from None
    if parts.username is not None or parts.password is not None:
        # Refused rather than sent: the URL appears in logs and error messages.
        raise ConfigurationError("SCORER_MONITOR_URL must not hold credentials (user:password@)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"SCORER_MONITOR_URL must be an http:// or https:// URL, got {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return _Target(shown, parts.scheme == "https", parts.hostname, port, path)


def _header_value(text: str) -> str:
    """``text`` as an HTTP header value: ``%``, what is not printable ASCII, and spaces at either
    end (which HTTP would strip) percent-encoded, as the CloudEvents HTTP binding does."""
    if text.isascii() and text.isprintable() and "%" not in text and text.strip(" ") == text:
        return text
    encoded = quote(text, safe=_KEPT)
    stripped = encoded.strip(" ")
    start = encoded.index(stripped) if stripped else len(encoded)
    return "%20" * start + stripped + "%20" * (len(encoded) - start - len(stripped))


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
        self._target = _target(url)
        self._context = context
        if self._target.https and context is None:
            # The system's CA store; OpenSSL also reads SSL_CERT_FILE and SSL_CERT_DIR here.
            self._context = ssl.create_default_context()
        self._host_name = quote(host_name or socket.gethostname(), safe="")
        self._common: dict[str, str] = {"ce-specversion": "1.0", "ce-component": "predictor"}
        if namespace:
            self._common["ce-namespace"] = _header_value(namespace)
        self._common["content-type"] = "application/json"
        self._sources: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._connection: http.client.HTTPConnection | None = None
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
        for index, event in enumerate(events):
            try:
                if self._closed:
                    raise _Failed("the sink is closed")
                for headers, body in self._pair(event):
                    self._post(headers, body, deadline)
            except _Failed as failure:
                raise SinkError(
                    f"CloudEvents receiver {self._target.url}: {failure}", undelivered=list(events[index:])
                ) from None

    def close(self, timeout: float) -> None:
        self._closed = True
        self._drop()

    def _pair(self, event: Event) -> tuple[tuple[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
        """The request half and the response half: headers and body of each."""
        model: Mapping[str, Any] = event["model"]
        status = event["status"]
        shared = {
            **self._common,
            "ce-id": _header_value(event_id(event)),
            "ce-source": self._source(model["name"]),
            "ce-inferenceservicename": self._model_name(model["name"]),
            "ce-endpoint": _header_value(event["endpoint"]),
            "ce-metadata": self._metadata(event["headers"]),
            "ce-status": str(status),
        }
        request, response = event["request"], event["response"]
        request_data = {
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
        response_data = {
            "id": event["id"],
            "part": event["part"],
            "parts": event["parts"],
            "status": status,
            "error": event["error"],
            "duration_ms": event["duration_ms"],
            "fields": response["fields"] if response is not None else None,
            "rows": response["rows"] if response is not None else None,
        }
        received: str = event["received"]
        answered = dt.datetime.fromisoformat(received) + dt.timedelta(milliseconds=event["duration_ms"])
        return (
            ({**shared, "ce-type": REQUEST_TYPE, "ce-time": _rfc3339(received)}, _json(request_data)),
            (
                {**shared, "ce-type": RESPONSE_TYPE, "ce-time": _rfc3339(answered.isoformat())},
                _json(response_data),
            ),
        )

    def _source(self, model_name: str) -> str:
        """``http://<host name>/<model name>``: KServe's agent defaults to ``http://localhost:<port>/``,
        which names no one; the pod's host name and the model name say which replica sent it."""
        source = self._sources.get(model_name)
        if source is None:
            uri = f"http://{self._host_name}/{quote(model_name, safe='')}"
            source = self._sources[model_name] = _header_value(uri)
        return source

    def _model_name(self, model_name: str) -> str:
        name = self._names.get(model_name)
        if name is None:
            name = self._names[model_name] = _header_value(model_name)
        return name

    @staticmethod
    def _metadata(headers: Mapping[str, str]) -> str:
        """The allow-listed request headers as KServe's ``metadata``: JSON, name to list of values."""
        if not headers:
            return "{}"
        shaped = {_canonical(name): [value] for name, value in headers.items()}
        return _header_value(orjson.dumps(shaped, option=orjson.OPT_SORT_KEYS).decode())

    def _post(self, headers: dict[str, str], body: bytes, deadline: float) -> None:
        """One POST on the kept connection; a connection the receiver closed while it was idle
        is opened again once (the post is then sent again: at least once, as the outbox's)."""
        for attempt in (1, 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failed("timed out")
            connection = self._connection or self._open(remaining)
            reused = connection.sock is not None
            if reused:
                connection.sock.settimeout(remaining)
            else:
                connection.timeout = remaining
            try:
                connection.request("POST", self._target.path, body, headers)
                answer = connection.getresponse()
                text = answer.read(_MAX_ANSWER + 1)
            except (OSError, http.client.HTTPException) as error:
                self._drop()
                stale = isinstance(error, (ConnectionError, http.client.BadStatusLine))
                if reused and stale and attempt == 1:
                    continue
                raise _Failed(_describe(error)) from None
            if len(text) > _MAX_ANSWER or not answer.isclosed():
                self._drop()
            if not 200 <= answer.status < 300:
                raise _Failed(f"answered {answer.status} {answer.reason}{_snippet(text)}")
            return

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        target = self._target
        connection: http.client.HTTPConnection
        if target.https:
            connection = http.client.HTTPSConnection(
                target.host, target.port, timeout=timeout, context=self._context
            )
        else:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class _Failed(Exception):
    """A post that did not succeed; ``send`` turns it into a SinkError naming the events left."""


def _json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def _describe(error: BaseException) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


def _snippet(text: bytes) -> str:
    """The start of a receiver's error answer, printable only (it ends up in logs)."""
    shown = "".join(c if c.isprintable() else " " for c in text[:200].decode("utf-8", "replace")).strip()
    return f": {shown}" if shown else ""
