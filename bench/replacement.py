"""Benchmark: latency of the requests answered while the served model is replaced, against the
requests of the same run answered while it is not.

``python bench/replacement.py``. For each model (``--models``, of ``bench/models.py``, each saved
twice, as two versions) and each ``BATCH_WORKERS`` (``--workers``), one server, loaded by
``CLIENTS`` client threads sending single rows on kept connections. Each round, after a steady
stretch, the two versions replace each other ``--swaps`` times (``POST /admin/model``), a
pause after each, so that every round holds requests answered during a replacement (from the
admin request to its answer: load, check, warm, switch, drain, close) and requests answered
outside one. Reported per round and as medians over ``--rounds``: the p50 and p99 of each kind,
their p99 ratio, the failed requests (must be 0) and the replacements' time. wrk cannot tell
which requests a replacement overlapped, so the clients are Python threads: the same clients
for both kinds. Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import Server, ours_body, running  # noqa: E402

BIN = Path(sys.executable).parent
CLIENTS = 32
ADMIN = "bench-admin-passphrase"


def replace(base: str, path: Path) -> tuple[float, float]:
    """One replacement: its start and end (``time.monotonic()``)."""
    request = urllib.request.Request(
        base + "/admin/model",
        data=json.dumps({"path": str(path)}).encode(),
        headers={"Content-Type": "application/json", "X-Admin-Passphrase": ADMIN},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as answer:
        report = json.loads(answer.read())
    assert report["replaced"], report
    return started, time.monotonic()


class Clients:
    """``CLIENTS`` threads scoring ``body`` on kept connections: each request's (start, end,
    status)."""

    def __init__(self, base: str, body: bytes) -> None:
        self._port = int(base.rsplit(":", 1)[1])
        self._body = body
        self._stop = threading.Event()
        self.requests: list[tuple[float, float, int]] = []
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
        headers = {"Content-Type": "application/json"}
        done = []
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                connection.request("POST", "/model/score", self._body, headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
            done.append((started, time.monotonic(), status))
        connection.close()
        self.requests.extend(done)  # list.extend is atomic under the GIL

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def one_round(base: str, body: bytes, versions: list[Path], swaps: int) -> dict[str, float]:
    with Clients(base, body) as clients:
        time.sleep(3)
        swapped = []
        for i in range(swaps):
            swapped.append(replace(base, versions[i % 2 == 0]))
            time.sleep(1)
    during: list[float] = []
    outside: list[float] = []
    for started, ended, _ in clients.requests:
        overlaps = any(started < end and ended > start for start, end in swapped)
        (during if overlaps else outside).append((ended - started) * 1000)
    seconds = clients.requests[-1][1] - clients.requests[0][0] if clients.requests else 1.0
    return {
        "rps": len(clients.requests) / seconds,
        "p50_outside": percentile(outside, 0.50),
        "p99_outside": percentile(outside, 0.99),
        "p50_during": percentile(during, 0.50),
        "p99_during": percentile(during, 0.99),
        "max_outside": max(outside, default=float("nan")),
        "max_during": max(during, default=float("nan")),
        "during": len(during),
        "failed": sum(1 for *_, status in clients.requests if status != 200),
        "swap_seconds": statistics.median(end - start for start, end in swapped),
    }


def measure(
    versions: list[Path], body: bytes, work: Path, workers: str, rounds: int, swaps: int
) -> list[dict]:
    env = {"SCORER_LOG_LEVEL": "warning", "SCORER_ADMIN_PASSPHRASE": ADMIN, "BATCH_WORKERS": workers}
    command = [str(BIN / "scorer"), "serve", str(versions[0]), "--port", "{port}"]
    server = Server(f"workers-{workers}", command, "/readyz", "/model/score", ours_body, env)
    found = []
    with running(server, work) as base:
        for _ in range(rounds):
            result = one_round(base, body, versions, swaps)
            found.append(result)
            print(
                f"  workers={workers}: {result['rps']:.0f} req/s; outside a replacement p50 "
                f"{result['p50_outside']:.1f} p99 {result['p99_outside']:.1f} ms; during one "
                f"({result['during']:.0f} requests) p50 {result['p50_during']:.1f} p99 "
                f"{result['p99_during']:.1f} max {result['max_during']:.1f} ms (outside: max "
                f"{result['max_outside']:.1f}); {swaps} replacements of {result['swap_seconds']:.2f} s; "
                f"failed {result['failed']}",
                flush=True,
            )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="credit,breast-cancer")
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--swaps", type=int, default=10)
    args = parser.parse_args()
    lines = [
        f"single rows, {CLIENTS} client threads; median of {args.rounds} rounds",
        "",
        "| model | BATCH_WORKERS | req/s | p50 / p99 ms, outside | p50 / p99 ms, during "
        "| p99 ratio | max ms, outside / during | failed | s per replacement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name in args.models.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"scorer-bench-replacement-{model_name}-"))
        built = [bench_models.MODELS[model_name](work / version) for version in ("v1", "v2")]
        body = json.dumps(ours_body(built[0].frame.iloc[:1])).encode()
        for workers in args.workers.split(","):
            print(f"{model_name} BATCH_WORKERS={workers}", flush=True)
            found = measure([b.path for b in built], body, work, workers, args.rounds, args.swaps)

            def median(key: str, found: list[dict] = found) -> float:
                return statistics.median(r[key] for r in found)

            lines.append(
                f"| {model_name} | {workers} | {median('rps'):.0f} "
                f"| {median('p50_outside'):.1f} / {median('p99_outside'):.1f} "
                f"| {median('p50_during'):.1f} / {median('p99_during'):.1f} "
                f"| {median('p99_during') / median('p99_outside'):.2f} "
                f"| {median('max_outside'):.0f} / {median('max_during'):.0f} "
                f"| {sum(r['failed'] for r in found)} "
                f"| {median('swap_seconds'):.2f} |"
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
