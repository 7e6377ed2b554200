"""Batching, admission, timeouts and shutdown over real HTTP with concurrent clients."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import model_calls, wait_for

pytestmark = pytest.mark.slow

ECHO = {"outputs": [["y", "Float64"], ["auth", "Str"], ["batch_rows", "Int64"]]}


def test_different_authorization_never_share_a_batch(probe_server):
    """64 concurrent clients, 8 distinct tokens: every response carries its own token, never another's."""
    env = {"H2O_SCORER_FORWARD_HEADERS": "Authorization"}
    with probe_server(env=env, record_headers=False, score_delay=0.01, **ECHO) as target:

        def client(i: int):
            token = f"Bearer tenant-{i % 8}"
            body = {"fields": ["x"], "rows": [[str(i)], [str(i + 0.5)]]}
            reply = target.post("/model/score", body, headers={"Authorization": token})
            assert reply.status == 200, reply
            return token, i, reply.json()["score"]

        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(client, [i for i in range(200) if i != 13]))
    merged = 0
    for token, i, rows in results:
        assert [row[1] for row in rows] == [token, token]
        assert [float(row[0]) for row in rows] == [2.0 * i, 2.0 * i + 1.0]
        merged += int(rows[0][2]) > 2
    assert merged > 0, "under load, requests with equal headers must have been merged"


def test_overload_gets_503_with_retry_after_and_nothing_is_lost(probe_server):
    env = {"SCORING_CONCURRENCY": "1", "SCORER_QUEUE_SIZE": "1", "SCORER_QUEUE_TIMEOUT": "30"}
    with probe_server(env=env, record_headers=False, score_delay=0.5) as target:

        def client(i: int):
            return target.post("/model/score", {"fields": ["x"], "rows": [[str(i)]]})

        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(client, range(6)))
        ok = [r for r in replies if r.status == 200]
        rejected = [r for r in replies if r.status == 503]
        assert len(ok) + len(rejected) == 6
        assert len(ok) >= 2 and rejected, [str(r) for r in replies]
        for reply in rejected:
            assert reply.headers["retry-after"] == "30"
            assert "SCORING_CONCURRENCY" in reply.json()["detail"]
        assert target.post("/model/score", {"fields": ["x"], "rows": [["1"]]}).status == 200


def test_waiting_too_long_in_the_queue_is_a_503(probe_server):
    env = {"SCORING_CONCURRENCY": "1", "SCORER_QUEUE_TIMEOUT": "0.2"}
    with probe_server(env=env, score_delay=1.0) as target:
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(target.post, "/model/score", {"fields": ["x"], "rows": [["1"]]})
            wait_for(lambda: model_calls(target) == 1, what="the first request in the model")
            late = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]})
            assert slow.result().status == 200
        assert late.status == 503 and "SCORER_QUEUE_TIMEOUT" in late.json()["detail"]
        assert late.headers["retry-after"] == "1"


def test_slow_model_gets_504_instead_of_holding_the_connection(probe_server):
    with probe_server(env={"SCORER_REQUEST_TIMEOUT": "0.3"}, record_headers=False, score_delay=2) as target:
        started = time.monotonic()
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["1"]]})
        assert reply.status == 504 and "SCORER_REQUEST_TIMEOUT" in reply.json()["detail"]
        assert time.monotonic() - started < 1.5


def test_sigterm_finishes_in_flight_requests_then_exits(probe_server):
    with probe_server(score_delay=1.0) as target:
        result = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "reply", target.post("/model/score", {"fields": ["x"], "rows": [["3"]]})
            )
        )
        thread.start()
        wait_for(lambda: model_calls(target) == 1, what="the request in the model")
        target.process.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        assert result["reply"].status == 200 and result["reply"].json()["score"] == [["6.0"]]
        target.process.wait(timeout=30)
        with pytest.raises(OSError):
            target.get("/readyz", timeout=2)


def test_reject_status_429_answers_refusals_with_429_and_the_same_retry_after(probe_server):
    env = {
        "SCORING_CONCURRENCY": "1", "SCORER_QUEUE_SIZE": "0", "SCORER_QUEUE_TIMEOUT": "7",
        "SCORER_REJECT_STATUS": "429",
    }  # fmt: skip
    with probe_server(env=env, score_delay=1.0) as target:
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(target.post, "/model/score", {"fields": ["x"], "rows": [["1"]]})
            wait_for(lambda: model_calls(target) == 1, what="the first request in the model")
            refused = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]})
            assert busy.result().status == 200
        assert refused.status == 429, refused
        assert refused.headers["retry-after"] == "7"
        assert "SCORING_CONCURRENCY" in refused.json()["detail"]
        metrics = target.get("/metrics").text
        assert 'scorer_rejected_requests_total{reason="overloaded"} 1.0' in metrics
        assert 'reason="too_many_auth_checks"} 1.0' not in metrics


def test_reject_status_takes_429_or_503_only(probe_file):
    import subprocess
    import sys

    from tests.conftest import plugin_env

    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", str(probe_file()), "--port", "0"],
        env={**__import__("os").environ, **plugin_env(SCORER_REJECT_STATUS="418")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "SCORER_REJECT_STATUS='418'" in result.stderr and "expected 429 or 503" in result.stderr
