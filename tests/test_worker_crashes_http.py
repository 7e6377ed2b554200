"""Inputs that crash the model's process (a segfault in native code), over real HTTP.

With worker processes, only the request that crashes a worker by itself fails: the requests merged
with it are scored apart and answered; its answer is held by the restart it cost, so a client that
keeps sending it leaves the others most of their throughput, and /readyz stays ready while a worker
can take work. In the server process, a crash ends the server, and its log says why.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import wait_for

# serial: a throughput ratio beside crashing workers, meaningless beside other tests' load.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

POISON = 666.0
SPEC = {"outputs": [["y", "Float64"], ["batch_rows", "Int64"]], "crash_on": POISON}


def body(x: float) -> dict[str, object]:
    return {"fields": ["x"], "rows": [[str(x)]]}


@contextmanager
def readiness(target, every: float = 0.05) -> Iterator[Counter[int]]:
    """Probe /readyz until the block ends; the statuses seen."""
    seen: Counter[int] = Counter()
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            seen[target.get("/readyz", timeout=10).status] += 1
            done.wait(every)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        yield seen
    finally:
        done.set()
        prober.join(timeout=30)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_requests_merged_with_a_crashing_one_are_answered_and_only_it_fails(probe_server, workers):
    env = {"BATCH_WORKERS": workers, "SCORER_FAILURE_SHARE": "1"}  # pacing is the next test's
    with probe_server(env=env, record_headers=False, score_delay=0.5, **SPEC) as target:
        with ThreadPoolExecutor(16) as pool, readiness(target) as ready:
            # Every worker busy for 0.5 s, so that the next requests queue and go merged.
            blockers = [pool.submit(target.post, "/model/score", body(i)) for i in range(int(workers))]
            time.sleep(0.1)
            xs = [*range(20, 25), POISON, *range(25, 30)]
            replies = list(pool.map(lambda x: target.post("/model/score", body(x)), xs))
            assert [b.result().status for b in blockers] == [200] * int(workers)
        log = target.server_log()
    by_x = dict(zip(xs, replies, strict=True))
    poison = by_x.pop(POISON)
    assert {x: r.status for x, r in by_x.items()} == {x: 200 for x in by_x}, [str(r) for r in by_x.values()]
    assert [float(r.json()["score"][0][0]) for r in by_x.values()] == [2.0 * x for x in by_x]
    assert poison.status == 500
    assert "died while scoring this request on its own (killed by signal SIGSEGV)" in poison.json()["detail"]
    merged = re.search(r"while scoring (\d+) requests merged; scoring them apart", log)
    assert merged and int(merged.group(1)) > 1, "the crashing batch was not merged"
    assert "Fatal Python error: Segmentation fault" in log, "the worker's crash left no stack"
    if workers == "2":
        # Requests scored apart wait for a spare worker, so their crash never takes the last one.
        assert set(ready) == {200}, ready


def test_a_batch_whose_time_ran_out_waiting_for_a_replacement_is_not_sent_to_it(probe_server):
    """One worker, and a replacement that loads for longer than the request timeout: the requests
    sent meanwhile get 504, and the fresh worker is not killed as hung for time that ran out before
    it received their batch (it was, 1 ms after, and its replacement the same way, for good)."""
    env = {"BATCH_WORKERS": "1", "SCORER_REQUEST_TIMEOUT": "1", "SCORER_FAILURE_SHARE": "1"}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        spec_file = Path(next(a for a in target.process.args if str(a).endswith(".probe")))  # type: ignore[union-attr]
        spec_file.write_text(json.dumps({**SPEC, "load_delay": 4}))  # the next load only
        assert target.post("/model/score", body(POISON), timeout=30).status == 500
        # Large, so that the worker cannot unpickle the batch and answer that its time ran out
        # within 1 ms, as it could a small one.
        rows = {"fields": ["x"], "rows": [[str(x)] for x in range(100_000)]}
        waited = [target.post("/model/score", rows, timeout=30) for _ in range(2)]
        assert [r.status for r in waited] == [504, 504], [r.text for r in waited]
        assert all("SCORER_REQUEST_TIMEOUT" in r.json()["detail"] for r in waited)

        def replaced(log: str) -> int:
            return len(re.findall(r"Replacement worker process \d+ ready", log))

        wait_for(lambda: replaced(target.server_log()) == 1, timeout=60, what="the replacement ready")
        reply = target.post("/model/score", body(3), timeout=30)
        assert reply.status == 200, reply.text
        assert float(reply.json()["score"][0][0]) == 6.0
        log = target.server_log()
    assert "did not answer within" not in log
    assert log.count("starting a replacement") == 1, "the fresh worker was killed and replaced again"
    assert replaced(log) == 1


def good_load(target, clients: int, seconds: float) -> Counter[int]:
    """Statuses of ``clients`` keep-alive clients sending good requests one after another."""
    stop = time.monotonic() + seconds

    def client(i: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        connection = http.client.HTTPConnection(
            "127.0.0.1", int(target.base_url.rsplit(":", 1)[1]), timeout=70
        )
        payload = f'{{"fields": ["x"], "rows": [["{i}"]]}}'
        try:
            for _ in range(100_000):
                if time.monotonic() >= stop:
                    break
                connection.request("POST", "/model/score", payload, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                statuses[response.status] += 1
        finally:
            connection.close()
        return statuses

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(client, range(20, 20 + clients)), Counter())


def test_good_clients_keep_most_of_their_throughput_beside_a_client_resending_a_crashing_request(
    probe_server,
):
    """One client sends the crashing request as fast as it is answered; good clients are measured
    alone, beside it, and alone again. The 10 s timeout bounds how long its answer is held."""
    env = {"BATCH_WORKERS": "2", "SCORER_REQUEST_TIMEOUT": "10"}
    seconds, clients = 6.0, 8
    with probe_server(env=env, record_headers=False, score_delay=0.002, **SPEC) as target:
        good_load(target, clients, 1)  # warm-up
        before = good_load(target, clients, seconds)
        stop = threading.Event()
        poisoned: list[tuple[int, str]] = []

        def poison() -> None:
            for _ in range(10_000):
                if stop.is_set():
                    return
                reply = target.post("/model/score", body(POISON), timeout=30)
                poisoned.append((reply.status, reply.text))

        poisoner = threading.Thread(target=poison)
        with readiness(target, every=0.1) as ready:
            poisoner.start()
            time.sleep(0.5)  # its first request in flight
            beside = good_load(target, clients, seconds)
            stop.set()
        poisoner.join(timeout=60)
        after = good_load(target, clients, seconds)
        log = target.server_log()
    assert not poisoner.is_alive()
    assert poisoned and all(s == 500 and "killed by signal SIGSEGV" in t for s, t in poisoned), poisoned
    assert log.count("Fatal Python error: Segmentation fault") >= 1
    assert set(beside) == {200}, f"good requests failed beside the crashing client: {beside}"
    assert set(ready) == {200}, f"/readyz beside the crashing client: {ready}"
    ratio = beside[200] / ((before[200] + after[200]) / 2)
    assert ratio >= 0.5, f"good requests alone {before[200]} and {after[200]}, beside {beside[200]}"


def test_a_crash_in_the_server_process_is_named_in_its_log(probe_server):
    with probe_server(env={"BATCH_WORKERS": "0"}, record_headers=False, **SPEC) as target:
        assert target.post("/model/score", body(1)).status == 200
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            target.post("/model/score", body(POISON))
        assert target.process.wait(timeout=30) == -11  # SIGSEGV: nothing in the process survives it
        log = target.server_log()
    assert "Model calls run in the server process: a crash in the model's native code" in log
    assert "BATCH_WORKERS=1 or more runs the model in worker processes" in log
    crash = log[log.index("Fatal Python error: Segmentation fault") :]
    assert "probe_plugin.py" in crash and "in score" in crash, crash
    assert "scoring.py" in crash and "in run_task" in crash, crash
