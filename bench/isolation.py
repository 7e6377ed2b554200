"""Benchmark: good clients alone, beside poison clients, and at 512 clients (issue: hardening).

One run, one server (``scorer serve``, the bench model of ``bench/run.py``: 30 float inputs),
wrk on loopback. Reports, as same-run ratios:

- good-client successful requests/s beside 8 poison clients (a cell the model rejects, ``NaN``)
  against the same 64 good clients alone: how much failure isolation costs the others;
- successful requests/s at 512 clients against 64: how much overload costs.

Every wrk run is bounded in time. ``.venv/bin/python bench/isolation.py --seconds 8``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py: the model, free ports, wrk)


def successful(url: str, body: Path, clients: int, seconds: int) -> float:
    rps, _, _, errors = bench.wrk(url, body, clients, seconds)
    return rps - errors / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        bench.wrk(url, good, 16, 2)  # warm-up
        alone = successful(url, good, 64, args.seconds)
        poisoner = subprocess.Popen(
            ["wrk", "-t1", "-c8", f"-d{args.seconds + 2}s", "--timeout", "60s", "-s", str(bench.LUA), url],
            env={**os.environ, "BODY_FILE": str(poison)}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
        beside = successful(url, good, 64, args.seconds)
        poisoner.wait(timeout=args.seconds + 30)
        overload = successful(url, good, 512, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print("| scenario | successful req/s | ratio |")
    print("|---|---|---|")
    print(f"| 64 good clients alone | {alone:,.0f} | 1.00 |")
    ratio = beside / alone
    print(f"| 64 good clients beside 8 poison clients | {beside:,.0f} | {ratio:.2f} (goal >= 0.80) |")
    print(f"| 512 good clients | {overload:,.0f} | {overload / alone:.2f} (goal >= 0.70) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
