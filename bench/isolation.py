"""Benchmark: good clients alone, beside poison clients, and at 512 clients (issue: hardening).

One run, one server (``scorer serve``, the bench model of ``bench/run.py``: 30 float inputs),
wrk on loopback. Reports, as same-run ratios:

- good-client successful requests/s beside 8 poison clients (a cell the model rejects, ``NaN``)
  against the same 64 good clients alone: how much failure isolation costs the others;
- successful requests/s at 512 clients against 64: how much overload costs.

This 2-core machine is shared and noisy (the same 6 s run of 64 clients alone varied from 1,800
to 3,400 req/s within minutes), so the scenarios are interleaved with runs alone (alone, beside,
alone, overloaded, alone, beside, ...), each scenario is divided by the mean of the runs alone
just before and just after it, and the median over ``--rounds`` rounds is the figure reported.

Every wrk run is bounded in time. ``.venv/bin/python bench/isolation.py --seconds 6 --rounds 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py: the model, free ports, wrk)

from conformance.target import wait_ready  # noqa: E402


def successful(url: str, body: Path, clients: int, seconds: int) -> float:
    rps, _, _, errors = bench.wrk(url, body, clients, seconds)
    return rps - errors / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scorer-isolation-"))
    model, columns, rows, _ = bench.build_model(work)
    good, poison = work / "good.json", work / "poison.json"
    row = [str(v) for v in rows[0]]
    good.write_text(json.dumps({"fields": columns, "rows": [row]}))
    poison.write_text(json.dumps({"fields": columns, "rows": [["NaN", *row[1:]]]}))
    port = bench.free_port()
    env = {**os.environ, "SCORER_LOG_LEVEL": "critical"}
    server = subprocess.Popen(
        [str(bench.BIN / "scorer"), "serve", str(model), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/model/score"
    try:
        wait_ready(f"http://127.0.0.1:{port}", 120, process=server)
        bench.wrk(url, good, 16, 2)  # warm-up
        rounds = interleaved(url, good, poison, args.seconds, args.rounds)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print("| round | 64 good alone (before, after) | beside 8 poison | ratio | 512 clients | ratio |")
    print("|---|---|---|---|---|---|")
    for number, r in enumerate(rounds, 1):
        print(
            f"| {number} | {r.alone[0]:,.0f}, {r.alone[1]:,.0f}, {r.alone[2]:,.0f} | {r.beside:,.0f} "
            f"| {r.beside_ratio:.2f} | {r.overload:,.0f} | {r.overload_ratio:.2f} |"
        )
    beside_ratio = statistics.median(r.beside_ratio for r in rounds)
    overload_ratio = statistics.median(r.overload_ratio for r in rounds)
    print(f"\nmedian of {len(rounds)} rounds: beside 8 poison clients {beside_ratio:.2f} (goal >= 0.80)")
    print(f"median of {len(rounds)} rounds: 512 clients {overload_ratio:.2f} (goal >= 0.70)")
    return 0


@dataclass
class Round:
    """Successful req/s: alone before the poison run, between it and the overload run, after."""

    alone: tuple[float, float, float]
    beside: float
    overload: float

    @property
    def beside_ratio(self) -> float:
        return self.beside / statistics.mean(self.alone[:2])

    @property
    def overload_ratio(self) -> float:
        return self.overload / statistics.mean(self.alone[1:])


def interleaved(url: str, good: Path, poison: Path, seconds: int, rounds: int) -> list[Round]:
    """Each scenario between two runs of the good clients alone; a round's last run alone is
    the next round's first."""
    done: list[Round] = []
    first = successful(url, good, 64, seconds)
    for _ in range(rounds):
        beside = beside_poison(url, good, poison, seconds)
        middle = successful(url, good, 64, seconds)
        overload = successful(url, good, 512, seconds)
        last = successful(url, good, 64, seconds)
        done.append(Round((first, middle, last), beside, overload))
        first = last
    return done


def beside_poison(url: str, good: Path, poison: Path, seconds: int) -> float:
    """Successful req/s of 64 good clients while 8 clients send requests the model fails on."""
    poisoner = subprocess.Popen(
        ["wrk", "-t1", "-c8", f"-d{seconds + 2}s", "--timeout", "60s", "-s", str(bench.LUA), url],
        env={**os.environ, "BODY_FILE": str(poison)}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)
    beside = successful(url, good, 64, seconds)
    poisoner.wait(timeout=seconds + 30)
    return beside

if __name__ == "__main__":
    sys.exit(main())
