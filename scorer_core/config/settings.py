"""Runtime configuration: one documented field per environment variable, validated at start-up."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from scorer_core.config.credentials import Credentials
from scorer_core.config.forwarding import HeaderForwarding
from scorer_core.config.logs import LOG_FORMATS
from scorer_core.config.shapley import SHAPLEY_CHOICES
from scorer_core.envsettings import EnvSettings
from scorer_core.errors import ConfigurationError

__all__ = [
    "CLI_FLAGS",
    "MONITOR_SINKS",
    "REMOVED_ENV_VARS",
    "Settings",
    "load_settings",
    "removed_env_var_warnings",
]

log = logging.getLogger(__name__)

#: Variables H2O's runtimes 1.x read and 2.0 removed, with what replaces each.
REMOVED_ENV_VARS = {
    "H2O_SCORER_WORKERS": "use SCORING_CONCURRENCY and BATCH_WORKERS instead",
    "H2O_SCORER_AUTHORIZATION_HEADER": (
        "use H2O_SCORER_FORWARD_HEADERS instead (e.g. H2O_SCORER_FORWARD_HEADERS=Authorization)"
    ),
}


#: What SCORER_MONITOR may name.
MONITOR_SINKS = ("kafka", "cloudevents", "file")


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _seconds_list(value: str) -> tuple[float, ...]:
    """Comma-separated seconds, each finite and not negative; empty means none."""
    try:
        seconds = tuple(float(part) for part in value.split(",")) if value.strip() else ()
    except ValueError:
        seconds = (-1.0,)
    if not all(0 <= s < float("inf") for s in seconds):
        raise ValueError(f"expected seconds separated by commas (e.g. 1,2,5,10,30), got {value!r}")
    return seconds


class Settings(EnvSettings):
    """Everything an operator can set. Each field's aliases are the environment variables read.

    Unlike plugin settings, an empty variable is a value here: H2O's Java scorer refuses an
    empty ``SHAPLEY_TYPES_ENABLED``, and so does this one.
    """

    model_config = SettingsConfigDict(**{**EnvSettings.model_config, "env_ignore_empty": False})

    model_path: str | None = Field(None, validation_alias=_env("SCORER_MODEL_PATH", "MODEL_PATH"))
    """Model to serve when ``scorer serve`` is given no path. ``MODEL_PATH`` is H2O's name for it.
    Kept as given, not as a ``Path``: a URI a plugin fetches (``s3://bucket/key``) would lose a slash."""

    runtime: str | None = Field(None, validation_alias=_env("SCORER_RUNTIME"))
    """Runtime to load the model with (e.g. ``mlflow-scorer``); detected from the path when unset."""

    host: str = Field("127.0.0.1", validation_alias=_env("SCORER_HOST"))
    """Interface to listen on. Set ``0.0.0.0`` in a container."""

    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("SCORER_PORT"))
    """TCP port to listen on (H2O's scorers use 8080)."""

    grpc_port: int | None = Field(None, ge=1, le=65535, validation_alias=_env("SCORER_GRPC_PORT"))
    """TCP port to serve the Open Inference Protocol over gRPC on, beside HTTP (on SCORER_HOST,
    with the same TLS and credential); unset: no gRPC. Needs the ``grpc`` extra (grpcio)."""

    model_id: str | None = Field(None, validation_alias=_env("MODEL_ID"))
    """Overrides the id ``/model/id`` and every response's ``id`` report."""

    model_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", validation_alias=_env("MODEL_NAME")
    )
    """The model's name in the Open Inference Protocol's paths (``/v2/models/<name>``); default:
    the model directory's name (a model file's, without its suffix)."""

    forward_headers: str = Field("", validation_alias=_env("H2O_SCORER_FORWARD_HEADERS"))
    """Comma-separated HTTP header names passed to model code through ``request_headers``.
    Tracing headers (traceparent, x-request-id, b3, ...) are never forwarded."""

    scoring_concurrency: int = Field(256, ge=1, validation_alias=_env("SCORING_CONCURRENCY"))
    """Requests being scored at once (batched together where they can be); more wait in a queue."""

    queue_size: int = Field(1024, ge=0, validation_alias=_env("SCORER_QUEUE_SIZE"))
    """Requests that may wait for a scoring slot; beyond it they get 503 with Retry-After."""

    queue_timeout: float = Field(5.0, gt=0, validation_alias=_env("SCORER_QUEUE_TIMEOUT"))
    """Seconds a request may wait in the queue before it gets 503 with Retry-After."""

    reject_status: int = Field(503, validation_alias=_env("SCORER_REJECT_STATUS"))
    """The status of an admission refusal (queue full, or waited too long): 503, or 429, which
    load balancers and SLOs do not count as the server's failure. Retry-After either way."""

    request_timeout: float = Field(60.0, gt=0, validation_alias=_env("SCORER_REQUEST_TIMEOUT"))
    """Seconds a request may take to be scored once admitted before it gets 504."""

    stuck_call_margin: float = Field(30.0, gt=0, validation_alias=_env("SCORER_STUCK_CALL_MARGIN"))
    """Seconds past SCORER_REQUEST_TIMEOUT after which a model call in the server process counts
    as stuck: /healthz and /readyz then fail, so an orchestrator restarts the server (a thread
    cannot be killed; a worker process past its deadline is killed and replaced instead)."""

    shutdown_grace: float = Field(30.0, gt=0, validation_alias=_env("SCORER_SHUTDOWN_GRACE"))
    """Seconds a SIGTERM or Ctrl-C waits for requests in flight; then the process exits, whatever a
    model call is doing."""

    batch_workers: int | None = Field(None, ge=0, validation_alias=_env("BATCH_WORKERS"))
    """Worker processes that run the model, each with its own copy; 0 runs it in the server process.
    Unset: the runtime's measured preference (``Runtime.preferred_batch_workers``)."""

    worker_restart_backoff: str = Field("1,2,5,10,30", validation_alias=_env("SCORER_WORKER_RESTART_BACKOFF"))
    """Seconds to wait before each further try at starting a replacement worker process, comma
    separated: after the first try fails and every wait is spent, the pool gives up on it."""

    worker_forkserver: bool = Field(True, validation_alias=_env("SCORER_WORKER_FORKSERVER"))
    """Fork worker processes from a process that imported the model's libraries once
    (``Runtime.preload_modules``): a worker starts, and one that died is replaced, without importing
    them again, and their memory is shared. ``false``: each worker is a fresh interpreter."""

    model_threads: int = Field(1, ge=1, validation_alias=_env("SCORER_MODEL_THREADS"))
    """Model calls running at once in the server process when BATCH_WORKERS=0."""

    model_library_threads: int | None = Field(
        None, ge=0, validation_alias=_env("SCORER_MODEL_LIBRARY_THREADS")
    )
    """Threads each model call's native libraries (OpenMP, BLAS) may use; 0 leaves the libraries'
    own defaults (one per core). Unset: the process's CPUs in the server process, an equal share
    for each worker process and the server (``execution.threads``)."""

    batch_max_rows: int = Field(4096, ge=1, validation_alias=_env("SCORER_BATCH_MAX_ROWS"))
    """Most rows merged into one model call (a larger single request still goes whole)."""

    batch_max_wait_ms: float = Field(0.0, ge=0, validation_alias=_env("SCORER_BATCH_MAX_WAIT_MS"))
    """Milliseconds a partial batch may wait to grow; 0 sends as soon as a model slot is free."""

    failure_share: float = Field(0.05, gt=0, le=1, validation_alias=_env("SCORER_FAILURE_SHARE"))
    """Most of the model's time that isolating failed requests may take from the requests merged
    with them: past it, the failed requests' error answers are paced (1 turns pacing off)."""

    failure_max_delay: float = Field(2.0, ge=0, validation_alias=_env("SCORER_FAILURE_MAX_DELAY"))
    """Most seconds a failed request's error answer is held by that pacing."""

    shapley_enable: str | None = Field(None, validation_alias=_env("SHAPLEY_ENABLE"))
    """``true`` enables every Shapley contribution type the model supports."""

    shapley_types_enabled: str | None = Field(None, validation_alias=_env("SHAPLEY_TYPES_ENABLED"))
    """One of ALL, ORIGINAL, TRANSFORMED, NONE: the Shapley types enabled when SHAPLEY_ENABLE is not true."""

    log_level: str = Field("info", validation_alias=_env("SCORER_LOG_LEVEL"))
    """Log level: debug, info, warning, error."""

    log_format: str = Field("text", validation_alias=_env("SCORER_LOG_FORMAT"))
    """``text``, or ``json``: one JSON object per line, with the request id and access fields."""

    access_log: bool | None = Field(None, validation_alias=_env("SCORER_ACCESS_LOG"))
    """``true``: one line per request (method, path, status, duration, rows, request id). Unset:
    on at the debug level only."""

    disable_plugins: str = Field("", validation_alias=_env("SCORER_DISABLE_PLUGINS"))
    """Comma-separated plugin names (entry-point names, e.g. ``dai_mojo``) not to load."""

    load_plugins: str = Field("", validation_alias=_env("SCORER_LOAD_PLUGINS"))
    """Comma-separated plugin names to load; when set, no other installed plugin is loaded."""

    extra_plugins: str = Field("", validation_alias=_env("SCORER_EXTRA_PLUGINS"))
    """Comma-separated importable module names registered as plugins without an entry point
    (for developing a plugin before packaging it)."""

    trace_plugins: bool = Field(False, validation_alias=_env("SCORER_TRACE_PLUGINS"))
    """``1`` logs every hook call with its arguments and results."""

    demo_model: str = Field("iris", validation_alias=_env("SCORER_DEMO_MODEL"))
    """Demo model served when no model path is given."""

    demo_dir: Path = Field(
        Path.home() / ".cache" / "scorer-core" / "demo",
        validation_alias=_env("SCORER_DEMO_DIR"),
    )
    """Where demo models are built (once) and cached."""

    max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, validation_alias=_env("SCORER_MAX_REQUEST_BYTES")
    )
    """Largest request body accepted; larger ones get 413, as soon as the limit is passed."""

    max_header_bytes: int = Field(64 * 1024, ge=1024, validation_alias=_env("SCORER_MAX_HEADER_BYTES"))
    """Most bytes a request's line and headers may take; more gets 431 and the connection closes."""

    body_timeout: float = Field(5.0, gt=0, validation_alias=_env("SCORER_BODY_TIMEOUT"))
    """Seconds a client may take to send a request's body; slower ones get 408 and are closed.
    The body is read before the request takes a scoring slot, so stalled uploads hold none."""

    header_timeout: float = Field(10.0, gt=0, validation_alias=_env("SCORER_HEADER_TIMEOUT"))
    """Seconds from a request's first byte to the end of its headers; slower ones get 408 and are
    closed, so headers dribbled a byte at a time cannot hold a connection."""

    idle_timeout: float = Field(5.0, gt=0, validation_alias=_env("SCORER_IDLE_TIMEOUT"))
    """Seconds a new connection may stay open before its first request starts; then it is closed,
    so silent sockets cannot pile up."""

    keepalive_timeout: float = Field(5.0, gt=0, validation_alias=_env("SCORER_KEEPALIVE_TIMEOUT"))
    """Seconds a kept-alive connection may wait, after an answer, for its next request to start;
    then it is closed. Set it above a proxy's or load balancer's idle timeout, so that the proxy
    closes first and never sends a request on a connection the server is closing (a 502)."""

    max_connections: int | None = Field(None, ge=1, validation_alias=_env("SCORER_MAX_CONNECTIONS"))
    """Open connections past which the longest idle ones are closed to make room (or, when none
    is idle, new ones answer 503 to all but /healthz and /readyz). Unset: the open-file limit
    less a reserve, so the probes always find a file descriptor."""

    passphrase: SecretStr | None = Field(None, validation_alias=_env("SCORER_PASSPHRASE"))
    """The deployment's passphrase, in plaintext: ``/model/*`` then needs
    ``Authorization: Bearer <passphrase>``, as H2O's clients send it (docs/security.md)."""

    passphrase_hash: SecretStr | None = Field(None, validation_alias=_env("SCORER_PASSPHRASE_HASH"))
    """The passphrase as a bcrypt hash (``$2b$...``) or a PBKDF2 hash
    (``pbkdf2:<hashFunc>:<iterations>$<salt>$<hash>``, salt and hash in base64)."""

    admin_passphrase: SecretStr | None = Field(None, validation_alias=_env("SCORER_ADMIN_PASSPHRASE"))
    """The admin credential (at least 16 characters): ``/admin/model`` (replace the served model,
    roll it back, list it) exists only when this is set, and needs
    ``X-Admin-Passphrase: <passphrase>`` besides the deployment's credential (docs/operating.md)."""

    model_load_timeout: float = Field(300.0, gt=0, validation_alias=_env("SCORER_MODEL_LOAD_TIMEOUT"))
    """Seconds a replacement model (``POST /admin/model``, SIGHUP) may take to load, check and
    warm; past it the replacement fails and the served model stays."""

    model_watch: bool = Field(False, validation_alias=_env("SCORER_MODEL_WATCH"))
    """Replace the model when a new version is copied over the start-up model path, once the copy
    is complete (its ``.scorer-version`` marker, else its files, changed and then still)."""

    model_watch_seconds: float = Field(
        5.0, gt=0, le=3600, validation_alias=_env("SCORER_MODEL_WATCH_SECONDS")
    )
    """Seconds between two looks at the model path when SCORER_MODEL_WATCH is on."""

    model_keep_previous: int = Field(1, ge=0, le=10, validation_alias=_env("SCORER_MODEL_KEEP_PREVIOUS"))
    """Replaced models remembered for ``POST /admin/model/rollback`` (their path, runtime and id;
    a rollback loads one again, checked to be the same model)."""

    oidc_issuer: str | None = Field(None, validation_alias=_env("SCORER_OIDC_ISSUER"))
    """The ``iss`` an OIDC bearer token must carry; with SCORER_OIDC_AUDIENCE and SCORER_OIDC_JWKS."""

    oidc_audience: str | None = Field(None, validation_alias=_env("SCORER_OIDC_AUDIENCE"))
    """The ``aud`` an OIDC bearer token must carry."""

    oidc_jwks: str | None = Field(None, validation_alias=_env("SCORER_OIDC_JWKS"))
    """The issuer's signing keys: a JWKS file (read at start) or an https URL (fetched when first
    needed, refreshed when a token names an unknown key, at most once a minute)."""

    file_scoring_dir: Path | None = Field(None, validation_alias=_env("SCORER_FILE_SCORING_DIR"))
    """A directory whose files ``GET /model/score?file=NAME`` may score (a path relative to it;
    nothing outside it, symlinks included). Unset: that request answers 501."""

    file_max_rows: int = Field(1_000_000, ge=1, validation_alias=_env("SCORER_FILE_MAX_ROWS"))
    """Most rows a file scored by ``GET /model/score?file=`` may hold; more gets 413. A few KiB of
    Parquet can hold millions of rows, so its size on disk bounds nothing."""

    file_max_decoded_bytes: int | None = Field(
        None, ge=1024, validation_alias=_env("SCORER_FILE_MAX_DECODED_BYTES")
    )
    """Most bytes a scored file's rows may decode to, counted as the body a POST of them would
    send; more gets 413. Unset: SCORER_MAX_REQUEST_BYTES, so a file is scored when its rows could
    be posted."""

    tracing: str = Field("off", validation_alias=_env("SCORER_TRACING"))
    """``off``; ``otlp``: OpenTelemetry spans of /model/* requests exported with OTLP (the
    ``OTEL_EXPORTER_OTLP_*`` variables); ``on``: spans to the process's own tracer provider."""

    tls_cert: Path | None = Field(None, validation_alias=_env("SCORER_TLS_CERT"))
    """PEM certificate chain to serve HTTPS with; with SCORER_TLS_KEY. Unset: plain HTTP."""

    tls_key: Path | None = Field(None, validation_alias=_env("SCORER_TLS_KEY"))
    """PEM private key of SCORER_TLS_CERT (unencrypted; mount it as a secret)."""

    metrics_auth: bool = Field(False, validation_alias=_env("SCORER_METRICS_AUTH"))
    """``true``: ``/metrics`` needs the same credential as ``/model/*`` (it is open by default, as
    Prometheus scrapers usually carry none)."""

    monitor: str = Field("", validation_alias=_env("SCORER_MONITOR"))
    """Where every scored request and its answer are exported, comma separated: ``kafka``,
    ``cloudevents``, ``file``; empty: nowhere (docs/monitoring.md). Never on the scoring path:
    events wait in a bounded queue, and are dropped and counted when it is full."""

    monitor_queue_size: int = Field(10_000, ge=1, validation_alias=_env("SCORER_MONITOR_QUEUE_SIZE"))
    """Events each sink may hold waiting to be sent; beyond it new ones are dropped (and counted)."""

    monitor_queue_rows: int = Field(1_000_000, ge=1, validation_alias=_env("SCORER_MONITOR_QUEUE_ROWS"))
    """Rows the events waiting for each sink may hold in all: a queue of large requests is bounded
    by their rows, not by their count, so that a slow sink cannot grow the server's memory."""

    monitor_sample: float = Field(1.0, ge=0, le=1, validation_alias=_env("SCORER_MONITOR_SAMPLE"))
    """Share of requests exported, chosen by a hash of the request id (the same id is always
    kept or always left out, so a request and its answer stay together)."""

    monitor_failures: bool = Field(True, validation_alias=_env("SCORER_MONITOR_FAILURES"))
    """``false``: only answered requests (status 200) are exported, not refused or failed ones."""

    monitor_headers: str = Field("", validation_alias=_env("SCORER_MONITOR_HEADERS"))
    """Comma-separated request headers copied into each event (a tenant, a client name).
    Credentials and tracing headers are refused at start-up."""

    monitor_drop_fields: str = Field("", validation_alias=_env("SCORER_MONITOR_DROP_FIELDS"))
    """Comma-separated fields (inputs or outputs) left out of every event."""

    monitor_hash_fields: str = Field("", validation_alias=_env("SCORER_MONITOR_HASH_FIELDS"))
    """Comma-separated fields whose values are exported as a keyed hash (HMAC-SHA256, hex), so
    that equal values can still be matched; needs SCORER_MONITOR_HASH_KEY or its _FILE."""

    monitor_hash_key: SecretStr | None = Field(None, validation_alias=_env("SCORER_MONITOR_HASH_KEY"))
    """The key of SCORER_MONITOR_HASH_FIELDS' hashes (at least 16 characters)."""

    monitor_hash_key_file: Path | None = Field(None, validation_alias=_env("SCORER_MONITOR_HASH_KEY_FILE"))
    """A file holding that key (a mounted secret), read at start-up."""

    monitor_retry_seconds: float = Field(60.0, ge=0, validation_alias=_env("SCORER_MONITOR_RETRY_SECONDS"))
    """How long a sink keeps retrying an event it could not deliver, with growing pauses, before
    it counts the event as failed."""

    monitor_flush_seconds: float = Field(10.0, ge=0, validation_alias=_env("SCORER_MONITOR_FLUSH_SECONDS"))
    """How long a stopping server waits for each sink to send what it holds (within
    SCORER_SHUTDOWN_GRACE, which ends the process whatever is left)."""

    monitor_kafka_bootstrap: str | None = Field(None, validation_alias=_env("SCORER_MONITOR_KAFKA_BOOTSTRAP"))
    """The Kafka sink's brokers, ``host:port`` comma separated."""

    monitor_kafka_topic: str | None = Field(None, validation_alias=_env("SCORER_MONITOR_KAFKA_TOPIC"))
    """The Kafka sink's topic (one per deployment, as H2O MLOps sets it per model)."""

    monitor_kafka_config: str = Field("", validation_alias=_env("SCORER_MONITOR_KAFKA_CONFIG"))
    """More producer properties for the Kafka sink, as librdkafka names them, comma separated
    (``security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,sasl.username=scorer``)."""

    monitor_kafka_password: SecretStr | None = Field(
        None, validation_alias=_env("SCORER_MONITOR_KAFKA_PASSWORD")
    )
    """The Kafka sink's ``sasl.password``, kept out of SCORER_MONITOR_KAFKA_CONFIG."""

    monitor_url: str | None = Field(None, validation_alias=_env("SCORER_MONITOR_URL"))
    """Where the ``cloudevents`` sink posts its events (KServe's logger ``url``)."""

    monitor_dir: Path | None = Field(None, validation_alias=_env("SCORER_MONITOR_DIR"))
    """Where the ``file`` sink writes its JSON Lines parts."""

    monitor_file_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, validation_alias=_env("SCORER_MONITOR_FILE_MAX_BYTES")
    )
    """Size past which the ``file`` sink closes a part and starts the next."""

    monitor_file_max_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("SCORER_MONITOR_FILE_MAX_SECONDS")
    )
    """Age past which the ``file`` sink closes a part and starts the next."""

    @field_validator("model_path", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value  # callers may pass a Path

    @field_validator("shapley_types_enabled")
    @classmethod
    def _known_shapley_type(cls, value: str | None) -> str | None:
        if value is not None and value not in SHAPLEY_CHOICES:  # exact, as H2O's Java valueOf
            raise ValueError(f"expected one of {', '.join(SHAPLEY_CHOICES)}, got {value!r}")
        return value

    @field_validator("worker_restart_backoff")
    @classmethod
    def _known_backoff(cls, value: str) -> str:
        _seconds_list(value)
        return value

    @property
    def restart_backoff(self) -> tuple[float, ...]:
        """SCORER_WORKER_RESTART_BACKOFF as seconds."""
        return _seconds_list(self.worker_restart_backoff)

    @field_validator("monitor")
    @classmethod
    def _known_sinks(cls, value: str) -> str:
        sinks = [part.strip().lower() for part in value.split(",") if part.strip()]
        unknown = [sink for sink in sinks if sink not in MONITOR_SINKS]
        if unknown:
            raise ValueError(f"expected sinks among {', '.join(MONITOR_SINKS)}, got {', '.join(unknown)}")
        return ",".join(dict.fromkeys(sinks))

    @property
    def monitor_sinks(self) -> tuple[str, ...]:
        """SCORER_MONITOR's sinks, each once."""
        return tuple(part for part in self.monitor.split(",") if part)

    @field_validator("reject_status")
    @classmethod
    def _known_reject_status(cls, value: int) -> int:
        if value not in (429, 503):
            raise ValueError(f"expected 429 or 503, got {value!r}")
        return value

    @field_validator("tracing")
    @classmethod
    def _known_tracing(cls, value: str) -> str:
        if value.lower() not in ("off", "on", "otlp"):
            raise ValueError(f"expected off, on or otlp, got {value!r}")
        return value.lower()

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value.lower() not in LOG_FORMATS:
            raise ValueError(f"expected text or json, got {value!r}")
        return value.lower()

    @property
    def access_logging(self) -> bool:
        """Whether each request gets an access log line."""
        return self.access_log if self.access_log is not None else self.log_level in ("debug", "trace")

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError(f"expected debug, info, warning or error, got {value!r}")
        return value.lower()

    @property
    def file_decoded_bytes(self) -> int:
        """SCORER_FILE_MAX_DECODED_BYTES, or SCORER_MAX_REQUEST_BYTES where it is unset."""
        return self.file_max_decoded_bytes or self.max_request_bytes

    @property
    def header_forwarding(self) -> HeaderForwarding:
        return HeaderForwarding.parse(self.forward_headers)

    def tls(self) -> tuple[str, str] | None:
        """(certificate, key) to serve HTTPS with, checked by loading them; None for plain HTTP."""
        if self.tls_cert is None and self.tls_key is None:
            return None
        if self.tls_cert is None or self.tls_key is None:
            given, missing = ("SCORER_TLS_CERT", "SCORER_TLS_KEY")[:: 1 if self.tls_key is None else -1]
            raise ConfigurationError(f"{given} is set but {missing} is not; HTTPS needs both")
        from scorer_core.config.tls import check_tls  # ssl is imported only where HTTPS is asked for

        return check_tls(self.tls_cert, self.tls_key)

    def credentials(self) -> Credentials | None:
        """What ``/model/*`` requests must carry, or None when the deployment is open; a
        ``ConfigurationError`` naming the mistake in a bad setting."""
        return Credentials.from_settings(
            self.passphrase.get_secret_value() if self.passphrase is not None else None,
            self.passphrase_hash.get_secret_value() if self.passphrase_hash is not None else None,
            self.oidc_issuer,
            self.oidc_audience,
            self.oidc_jwks,
        )


#: Fields the ``scorer`` command line can set, and the flag that sets each.
CLI_FLAGS = {"runtime": "--runtime", "host": "--host", "port": "--port"}


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line ``overrides`` (``None`` values ignored).

    Raises ``ConfigurationError`` naming the variable, or the flag the user typed, and the value.
    """
    return Settings.load(CLI_FLAGS, **overrides)


def removed_env_var_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per removed H2O variable that is set, naming its replacement."""
    env = os.environ if environ is None else environ
    return [
        f"{name} is set but no longer used (removed in H2O scoring runtimes 2.0); {hint}"
        for name, hint in REMOVED_ENV_VARS.items()
        if name in env
    ]
