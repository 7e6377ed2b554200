"""Cost of the worker IPC encoding: pickle protocol 5 against JSON, for 1-row and 10,000-row tasks.

``python bench/ipc.py``: prints size and encode+decode time per message, for the task the server
sends and the result the worker returns.
"""

from __future__ import annotations

import json
import pickle
import time

import numpy as np

from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.frame import Frame
from scorer_core.headers import ForwardedHeaders


def message(rows: int, columns: int = 30) -> tuple[list[ScoringTask], list[ScoringResult]]:
    data = np.random.default_rng(0).normal(size=(rows, columns))
    frame = Frame({f"f{i}": data[:, i] for i in range(columns)}, rows)
    task = ScoringTask(frame, ForwardedHeaders({"Authorization": "Bearer x"}))
    result = ScoringResult({"prediction": np.zeros(rows, dtype=np.int64)})
    return [task], [result]


def as_json(tasks: list[ScoringTask]) -> bytes:
    return json.dumps(
        [{"columns": {n: c.tolist() for n, c in t.frame.items()}, "headers": dict(t.headers)} for t in tasks]
    ).encode()


def timed(encode, decode, payload, repeats: int) -> tuple[int, float]:
    encoded = encode(payload)
    started = time.perf_counter()
    for _ in range(repeats):
        decode(encode(payload))
    return len(encoded), (time.perf_counter() - started) / repeats * 1e6


def main() -> None:
    print(f"{'message':28} {'encoding':10} {'bytes':>10} {'encode+decode':>15}")
    for rows in (1, 10_000):
        tasks, results = message(rows)
        repeats = 2000 if rows == 1 else 20
        for name, payload in (("task", tasks), ("result", results)):
            size, micros = timed(lambda p: pickle.dumps(p, protocol=5), pickle.loads, payload, repeats)
            print(f"{rows:>6} rows x 30 cols {name:7} {'pickle 5':10} {size:>10,} {micros:>12,.0f} us")
        size, micros = timed(as_json, json.loads, tasks, repeats)
        print(f"{rows:>6} rows x 30 cols {'task':7} {'JSON':10} {size:>10,} {micros:>12,.0f} us")


if __name__ == "__main__":
    main()
