"""Prometheus metrics: what ``GET /metrics`` shows (names and meanings in docs/metrics.md).

Why every sample lives in the server process: the model may run in worker processes, which die
and are replaced. Each worker reports how long its model calls took, and on how many rows, with
the batch's answer (``BatchReport.calls``), so those samples reach this process before the
request is answered and a worker that dies afterwards loses none; a call cut short by a death
was never a call. There is one HTTP process, so no sample is counted twice, and no multiprocess
directory needs cleaning when a worker is replaced (prometheus_client's multiprocess mode keeps
dead processes' files and cannot tell a replaced worker's counters from a live one's).

Labels take only values from fixed sets (endpoint names, status codes, rejection reasons):
a client choosing paths must not be able to grow the number of series.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from scorer_core.errors import (
    InvalidRequest,
    NotReady,
    Overloaded,
    ScorerError,
    ScoringTimeout,
    UnsupportedOperation,
)
from scorer_core.execution.isolation import BatchReport
from scorer_core.execution.scoring import ScoringTask

__all__ = ["CONTENT_TYPE", "ENDPOINTS", "ScorerMetrics", "endpoint_of"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Paths (after the deployment prefix is stripped) and the ``endpoint`` label of each.
ENDPOINTS = {
    "/model/score": "score",
    "/model/contribution": "contribution",
    "/model/schema": "schema",
    "/model/capabilities": "capabilities",
    "/model/id": "id",
    "/model/sample_request": "sample_request",
    "/model/media-score": "media_score",
    "/admin/model": "admin_model",
    "/admin/model/rollback": "admin_rollback",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/openapi.json": "openapi",
    "/docs": "docs",
    "/v2": "oip_server_metadata",
    "/v2/health/live": "oip_live",
    "/v2/health/ready": "oip_ready",
}
#: The Open Inference Protocol's model paths, whose model name and version a client chooses, by
#: what they end with: the label must not grow with the names clients send.
_OIP_MODEL_PATH = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?(/infer|/ready)?")
_OIP_MODEL_ENDPOINTS = {"/infer": "oip_infer", "/ready": "oip_model_ready", None: "oip_model_metadata"}

#: Rejection reasons of the errors best told by their HTTP status.
_REASONS_BY_STATUS = {
    401: "unauthorized",
    408: "slow_body",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_auth_checks",
}

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144, 1048576)


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of a request path; ``docs_assets`` or ``other`` for the rest."""
    found = ENDPOINTS.get(path)
    if found is not None:
        return found
    model_path = _OIP_MODEL_PATH.fullmatch(path)
    if model_path is not None:
        return _OIP_MODEL_ENDPOINTS[model_path.group(1)]
    return "docs_assets" if path.startswith("/docs-assets/") else "other"


def rejection_reason(error: ScorerError) -> str | None:
    """Why a request was turned away before or instead of scoring; None for model failures."""
    if isinstance(error, Overloaded):  # first: its status may be 429 (SCORER_REJECT_STATUS)
        return "overloaded"
    by_status = _REASONS_BY_STATUS.get(error.status_code)
    if by_status is not None:  # before the classes: the body errors are InvalidRequests too
        return by_status
    if isinstance(error, NotReady):
        return "not_ready"
    if isinstance(error, ScoringTimeout):
        return "timeout"
    if isinstance(error, InvalidRequest):
        return "invalid"
    if isinstance(error, UnsupportedOperation):
        return "unsupported"
    return None


class ScorerMetrics:
    """The server's metrics, in a registry of its own (so tests and embedders can have several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "scorer_requests",
            "HTTP requests answered, by endpoint and status code",
            ["endpoint", "code"],
            registry=r,
        )
        self._duration = Histogram(
            "scorer_request_duration_seconds",
            "Time from the request's arrival to its answer, by endpoint",
            ["endpoint"],
            buckets=_SECONDS,
            registry=r,
        )
        self._queue_wait = Histogram(
            "scorer_queue_wait_seconds",
            "Time a scoring request waited: for admission (stage=admission), then for a model slot "
            "in the batcher (stage=batch)",
            ["stage"],
            buckets=_SECONDS,
            registry=r,
        )
        self._model_call = Histogram(
            "scorer_model_call_duration_seconds",
            "Time of each model call (a merged batch, or a part of one being isolated), measured "
            "where the model runs",
            buckets=_SECONDS,
            registry=r,
        )
        self._batch_rows = Histogram(
            "scorer_batch_rows", "Rows in each model call", buckets=_ROWS, registry=r
        )
        self._rejected = Counter(
            "scorer_rejected_requests",
            "Requests refused or timed out, by reason: overloaded, not_ready, timeout, too_large, "
            "slow_body, unsupported_media_type, unauthorized, invalid, unsupported, client_disconnect",
            ["reason"],
            registry=r,
        )
        self._disconnected = self._rejected.labels("client_disconnect")
        self.in_flight = Gauge(
            "scorer_in_flight_requests", "Scoring requests being read, queued or scored now", registry=r
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._batch_wait = self._queue_wait.labels("batch")
        self._admission_wait = self._queue_wait.labels("admission")
        self._sources = _Sources()
        r.register(self._sources)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def watch(
        self,
        *,
        model: Callable[[], tuple[str, str] | None],
        worker_restarts: Callable[[], int],
        workers: Callable[[], Sequence[tuple[int, int]]],
        replacements: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """Where the pulled metrics come from: the model's (id, runtime) once loaded, the worker
        pool's restart count and its workers as (slot, pid), the model replacements by outcome."""
        self._sources.model = model
        if replacements is not None:
            self._sources.replacements = replacements
        self._sources.worker_restarts = worker_restarts
        self._sources.workers = workers

    def request(self, endpoint: str, code: int, seconds: float) -> None:
        children = self._children.get((endpoint, code))
        if children is None:
            children = self._children[(endpoint, code)] = (
                self._requests.labels(endpoint, str(code)),
                self._duration.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def rejected(self, error: ScorerError) -> None:
        reason = rejection_reason(error)
        if reason is not None:
            self._rejected.labels(reason).inc()

    def client_disconnected(self) -> None:
        """A client closed its connection before its request's body was read."""
        self._disconnected.inc()

    def admission_wait(self, seconds: float) -> None:
        self._admission_wait.observe(seconds)

    def batch(
        self, tasks: Sequence[ScoringTask], waits: Iterable[float], report: BatchReport, started: float
    ) -> None:
        """One batch: each request's wait for its slot, and the model calls it took."""
        for wait in waits:
            self._batch_wait.observe(wait)
        for seconds, rows in report.calls:
            self._model_call.observe(seconds)
            self._batch_rows.observe(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Sources(Collector):
    """Metrics read when scraped: the model info, worker restarts, and each worker's CPU and memory."""

    def __init__(self) -> None:
        self.model: Callable[[], tuple[str, str] | None] = lambda: None
        self.worker_restarts: Callable[[], int] = lambda: 0
        self.workers: Callable[[], Sequence[tuple[int, int]]] = list
        self.replacements: Callable[[], Mapping[str, int]] = dict

    def collect(self) -> Iterable[Metric]:
        found = self.model()
        info = InfoMetricFamily("scorer_model", "The model served and the runtime serving it", labels=())
        if found is not None:
            info.add_metric([], {"model_id": found[0], "runtime": found[1]})
        yield info
        replaced = self.replacements()
        if replaced:
            replacements = CounterMetricFamily(
                "scorer_model_replacements",
                "Replacements of the served model (/admin/model, SIGHUP), by outcome",
                labels=["outcome"],
            )
            for outcome, count in replaced.items():
                replacements.add_metric([outcome], count)
            yield replacements
        restarts = CounterMetricFamily(
            "scorer_worker_restarts", "Worker processes replaced after they died or were killed"
        )
        restarts.add_metric([], self.worker_restarts())
        yield restarts
        # Labelled by slot, not pid: a worker killed and replaced keeps its series, so a client
        # that gets workers killed (by timeouts) adds no series.
        cpu = CounterMetricFamily(
            "scorer_worker_cpu_seconds",
            "CPU time of the live worker process in each slot (from 0 again after a replacement)",
            labels=["worker"],
        )
        memory = GaugeMetricFamily(
            "scorer_worker_resident_memory_bytes",
            "Resident memory of the live worker process in each slot",
            labels=["worker"],
        )
        alive = 0
        for slot, pid in self.workers():
            usage = _process_usage(pid)
            if usage is not None:
                alive += 1
                cpu.add_metric([str(slot)], usage[0])
                memory.add_metric([str(slot)], usage[1])
        yield cpu
        yield memory
        live = GaugeMetricFamily("scorer_workers_alive", "Worker processes alive now (0 when in-process)")
        live.add_metric([], alive)
        yield live

    def describe(self) -> Iterable[Metric]:
        return []


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _process_usage(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, resident bytes) from /proc; None where there is no /proc or the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the command: state is field 3, utime 14, stime 15, rss 24 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE
