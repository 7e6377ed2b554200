"""Benchmark: good clients alone, and beside one client whose request segfaults the model (issue 23).

One server, ``scorer serve`` with ``BATCH_WORKERS=2``, on the breast-cancer model of
``bench/run.py`` wrapped in an MLflow pyfunc model that dereferences a null pointer when a row's
first cell is the marker (as a native library with a bug would). wrk on loopback:

- 64 good clients alone;
- the same beside one client sending the crashing request as fast as it is answered (wrk, one
  connection), while /readyz is probed every 0.1 s;
- 64 good clients alone again.

Each round's figure is the good clients' successful requests/s beside the crashing client divided
by the mean of the runs alone just before and after it (the machine is shared and noisy, see
``bench/isolation.py``); the median over ``--rounds`` is reported (goal: at least 0.5), with the
crashes, the crashing client's answers and the /readyz answers seen.

The crashing client's answers are held by the restart each crash cost (up to the request timeout),
so it crashes a worker about once a minute: runs of several tens of seconds show that steady state,
while a short run mostly measures one restart.

``.venv/bin/python bench/crash_poison.py --seconds 30 --rounds 3``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py: the model, free ports, wrk, a running server)
from isolation import successful  # noqa: E402

#: The first cell's value that crashes the model.
MARKER = -666.0
CLIENTS = 64


def crashing_model(directory: Path) -> tuple[Path, list[str], list[str]]:
    """The breast-cancer model behind a pyfunc that segfaults on ``MARKER``: (path, columns, row)."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    (directory / "sklearn").mkdir()
    sklearn_model, columns, rows, estimator = bench.build_model(directory / "sklearn")

    # Pickled by value with the model. No type hints on predict: MLflow would read them as a schema.
    class SegfaultOnMarker(mlflow.pyfunc.PythonModel):
        def __init__(self, marker: float) -> None:
            self.marker = marker

        def load_context(self, context):
            import mlflow.sklearn

            self.model = mlflow.sklearn.load_model(context.artifacts["model"])

        def predict(self, context, model_input, params=None):
            if (model_input.iloc[:, 0] == self.marker).any():
                import ctypes

                ctypes.string_at(0)  # a null pointer read: SIGSEGV
            return self.model.predict(model_input)

    import pandas as pd

    frame = pd.DataFrame(rows[:100], columns=columns)
    path = directory / "crashing"
    mlflow.pyfunc.save_model(
        path,
        python_model=SegfaultOnMarker(MARKER),
        artifacts={"model": str(sklearn_model)},
        signature=infer_signature(frame, estimator.predict(frame)),  # type: ignore[attr-defined]
    )
    return path, columns, [str(v) for v in rows[0]]


def readiness(base: str, stop: threading.Event, seen: Counter[int]) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=5) as reply:
                seen[reply.status] += 1
        except urllib.error.HTTPError as error:
            seen[error.code] += 1
        except OSError:
            seen[0] += 1
        stop.wait(0.1)


def beside_crasher(base: str, good: Path, poison: Path, seconds: int) -> tuple[float, Counter[int]]:
    """Good successful req/s beside one client resending the crashing request; /readyz statuses."""
    crasher = subprocess.Popen(
        ["wrk", "-t1", "-c1", f"-d{seconds + 2}s", "--timeout", "90s", "-s", str(bench.LUA),
         base + "/model/score"],
        env={**os.environ, "BODY_FILE": str(poison)}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    stop, seen = threading.Event(), Counter[int]()
    prober = threading.Thread(target=readiness, args=(base, stop, seen))
    prober.start()
    try:
        time.sleep(1)
        rate = successful(base + "/model/score", good, CLIENTS, seconds)
    finally:
        stop.set()
        prober.join()
        crasher.wait(timeout=seconds + 120)
    return rate, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scorer-crash-poison-"))
    model, columns, row = crashing_model(work)
    good, poison = work / "good.json", work / "poison.json"
    good.write_text(json.dumps({"fields": columns, "rows": [row]}))
    poison.write_text(json.dumps({"fields": columns, "rows": [[str(MARKER), *row[1:]]]}))
    server = bench.Server(
        "crash-poison",
        [str(bench.BIN / "scorer"), "serve", str(model), "--port", "{port}"],
        "/readyz",
        "/model/score",
        bench.ours_body,
        {"BATCH_WORKERS": "2", "SCORER_LOG_LEVEL": "warning"},
    )
    print("| round | 64 good alone (before, after) | beside 1 crashing client | ratio | /readyz beside |")
    print("|---|---|---|---|---|")
    ratios = []
    with bench.running(server, work) as base:
        url = base + "/model/score"
        successful(url, good, 16, 2)  # warm-up
        before = successful(url, good, CLIENTS, args.seconds)
        for number in range(1, args.rounds + 1):
            beside, ready = beside_crasher(base, good, poison, args.seconds)
            after = successful(url, good, CLIENTS, args.seconds)
            ratios.append(beside / statistics.mean((before, after)))
            shown = ", ".join(f"{n} x {code}" for code, n in sorted(ready.items()))
            print(f"| {number} | {before:,.0f}, {after:,.0f} | {beside:,.0f} | {ratios[-1]:.2f} | {shown} |")
            before = after
    log = (work / "crash-poison.log").read_text(errors="replace")
    print(f"\nworker crashes (segfaults): {log.count('Fatal Python error: Segmentation fault')}")
    print(f"median of {len(ratios)} rounds: {statistics.median(ratios):.2f} (goal >= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
