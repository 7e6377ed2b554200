"""GET /metrics over real HTTP, with the model in two worker processes: counts that move by
exactly what was sent, rejections by reason, worker restarts, and bounded labels."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]], "model_id": "metrics-probe"}


def scrape(target, **kwargs) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = target.get("/metrics", **kwargs)
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("text/plain; version=")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_counters_and_histograms_move_by_exactly_what_was_sent_with_two_workers(probe_server):
    requests = 120
    sizes = [1 + i % 5 for i in range(requests)]
    with probe_server(env={"BATCH_WORKERS": "2"}, score_delay=0.002, **SPEC) as target:
        before = scrape(target)
        calls_before = target.seen_headers()

        def send(i: int) -> int:
            rows = [[str(i + r + 0.5)] for r in range(sizes[i])]  # never 13, which the probe refuses
            return target.post("/model/score", {"fields": ["x"], "rows": rows}).status

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(send, range(requests))) == {200}
        after = scrape(target)
        made = target.seen_headers()[len(calls_before) :]  # each model call, as the workers made it

    assert moved(before, after, "scorer_requests_total", endpoint="score", code="200") == requests
    assert moved(before, after, "scorer_request_duration_seconds_count", endpoint="score") == requests
    assert moved(before, after, "scorer_request_duration_seconds_sum", endpoint="score") > 0
    for stage in ("admission", "batch"):
        assert moved(before, after, "scorer_queue_wait_seconds_count", stage=stage) == requests
    assert moved(before, after, "scorer_batch_rows_sum") == sum(sizes)
    calls = moved(before, after, "scorer_model_call_duration_seconds_count")
    assert calls == moved(before, after, "scorer_batch_rows_count")
    assert calls == len(made) and sum(call["rows"] for call in made) == sum(sizes)
    # 2 ms of model time per call at least, measured in the workers and carried back.
    assert moved(before, after, "scorer_model_call_duration_seconds_sum") >= 0.002 * calls
    assert value(after, "scorer_in_flight_requests") == 0
    assert value(after, "scorer_model_info", model_id="metrics-probe", runtime="probe-scorer") == 1
    workers = {dict(labels)["worker"] for name, labels in after if name == "scorer_worker_cpu_seconds_total"}
    assert workers == {"0", "1"} and value(after, "scorer_workers_alive") == 2
    assert all(value(after, "scorer_worker_resident_memory_bytes", worker=w) > 1e6 for w in workers)
    assert value(after, "process_resident_memory_bytes") > 1e6


def test_rejections_are_counted_by_reason(probe_server):
    env = {"SCORER_MAX_REQUEST_BYTES": "2048", "SCORER_REQUEST_TIMEOUT": "0.5"}
    with probe_server(env=env, record_headers=False, score_delay=1.0, **SPEC) as target:
        before = scrape(target)
        assert target.post("/model/score", {"fields": ["x"], "rows": [["abc"]]}).status == 400
        assert target.post("/model/score", raw=b"x=1", headers={"Content-Type": "text/plain"}).status == 415
        assert target.post("/model/score", {"fields": ["x"], "rows": [["1"]] * 1000}).status == 413
        assert target.post("/model/score", {"fields": ["x"], "rows": [["99"]]}).status == 504
        assert target.post("/model/media-score", {}).status == 501
        after = scrape(target)
    for reason in ("invalid", "unsupported_media_type", "too_large", "timeout", "unsupported"):
        assert moved(before, after, "scorer_rejected_requests_total", reason=reason) == 1, reason
    assert moved(before, after, "scorer_requests_total", endpoint="score", code="504") == 1


def test_metrics_stay_open_with_a_passphrase_unless_asked_to_need_it(probe_server):
    env = {"SCORER_PASSPHRASE": "pass-123"}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        before = scrape(target)
        assert target.post("/model/score", {"fields": ["x"], "rows": [["1"]]}).status == 401
        assert target.get("/d-1/metrics").status == 200  # under the deployment prefix too
        after = scrape(target)
        assert moved(before, after, "scorer_rejected_requests_total", reason="unauthorized") == 1
        assert moved(before, after, "scorer_requests_total", endpoint="score", code="401") == 1
    with probe_server(env={**env, "SCORER_METRICS_AUTH": "true"}, record_headers=False, **SPEC) as target:
        assert target.get("/metrics").status == 401
        scrape(target, headers={"Authorization": "Bearer pass-123"})
        assert target.get("/healthz").status == 200


def test_paths_a_client_makes_up_never_become_labels(probe_server):
    with probe_server(record_headers=False, **SPEC) as target:
        for i in range(20):
            assert target.get(f"/made-up-{i}/path").status == 404
        samples = scrape(target)
    endpoints = {dict(labels).get("endpoint") for name, labels in samples if name == "scorer_requests_total"}
    assert "other" in endpoints
    assert not any("made-up" in str(e) for e in endpoints)
    assert value(samples, "scorer_requests_total", endpoint="other", code="404") == 20


def test_a_killed_worker_is_counted_as_restarted(probe_server):
    with probe_server(env={"BATCH_WORKERS": "1"}, record_headers=False, **SPEC) as target:
        samples = scrape(target)
        assert value(samples, "scorer_worker_restarts_total") == 0
        assert value(samples, "scorer_workers_alive") == 1
        ready = [ln for ln in target.server_log().splitlines() if "worker processes ready: pids" in ln]
        pid = int(ready[-1].rsplit("[", 1)[1].split("]")[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        statuses: defaultdict[int, int] = defaultdict(int)
        while time.monotonic() < deadline:
            statuses[target.post("/model/score", {"fields": ["x"], "rows": [["1"]]}).status] += 1
            samples = scrape(target)
            if value(samples, "scorer_worker_restarts_total") == 1 and statuses[200]:
                break
            time.sleep(0.2)
        assert value(samples, "scorer_worker_restarts_total") == 1, dict(statuses)
        # The replacement fills the same slot: the same series, no new one per killed worker.
        workers = {
            dict(labels)["worker"] for name, labels in samples if name == "scorer_worker_cpu_seconds_total"
        }
        assert workers == {"0"} and value(samples, "scorer_workers_alive") == 1
