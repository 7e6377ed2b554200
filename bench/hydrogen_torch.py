"""Benchmark: batched against unbatched scoring of a small transformer-like HT model.

    .venv/bin/python bench/hydrogen_torch.py [--seconds 8] [--clients 64]

The model is plugins/hydrogen_torch/tests/models/ht_networks.TinyTransformerClassifier (2 encoder
layers, d=64, 32 tokens, random weights from a fixed seed) saved as an HT model (TorchScript,
legacy blob output). Two measurements:

- in-process: ``HydrogenTorchRuntime.score`` on 256 rows as one call against 256 one-row calls;
- over HTTP: ``wrk`` with single-row requests from ``--clients`` connections, against
  ``scorer serve`` with batching as shipped and with ``SCORER_BATCH_MAX_ROWS=1`` (every request
  scored alone).

Prints rows/s and the ratio batched/unbatched from this run, and writes bench/results/.
Device: ``SCORER_TORCH_DEVICE`` (default auto: CUDA when present).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ROOT / "plugins" / "hydrogen_torch" / "tests" / "models"
RESULTS = HERE / "results"
sys.path[:0] = [str(HERE), str(MODELS)]

TEXT = "the movie was good but the plot was awful and the actor was okay"


def rows_per_second(rows: int, run: Any, repeats: int) -> float:
    run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return rows * repeats / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()

    import ht_networks
    from run import wrk
    from scorer_hydrogen_torch.packaging import save_model
    from scorer_hydrogen_torch.runtime import HydrogenTorchRuntime

    from conformance import start_server
    from scorer_core.wire.cells import build_frame

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(
            Path(tmp) / "transformer",
            ht_networks.seeded(ht_networks.TinyTransformerClassifier),
            task="text_classification",
            labels=ht_networks.TEXT_LABELS,
            encoder={"kind": "text", "column": "text", "vocab": ht_networks.VOCAB, "max_length": 32},
        )
        runtime = HydrogenTorchRuntime()
        runtime.load(path)
        one = build_frame(["text"], [[TEXT]], runtime.schema.inputs)
        many = build_frame(["text"], [[TEXT]] * 256, runtime.schema.inputs)
        results["in-process, 256 rows per call"] = rows_per_second(256, lambda: runtime.score(many), 20)
        results["in-process, 1 row per call"] = rows_per_second(1, lambda: runtime.score(one), 256 * 5)

        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"fields": ["text"], "rows": [[TEXT]]}))
        for label, env in (
            ("HTTP, batched (as shipped)", {}),
            ("HTTP, unbatched (SCORER_BATCH_MAX_ROWS=1)", {"SCORER_BATCH_MAX_ROWS": "1"}),
        ):
            with start_server(
                path, env={"SCORER_LOAD_PLUGINS": "mlflow,hydrogen_torch", **env}, record_headers=False
            ) as target:
                wrk(f"{target.base_url}/model/score", body, args.clients, 2)  # warm-up
                rps, _p50, p99, errors = wrk(
                    f"{target.base_url}/model/score", body, args.clients, args.seconds
                )
                if errors:
                    raise SystemExit(f"{label}: {errors} failed requests")
                results[label] = rps
                results[f"{label} p99 ms"] = p99

    print(f"TinyTransformerClassifier on {runtime.device}, {args.clients} clients for HTTP")
    for name, value in results.items():
        print(f"  {name:48s} {value:12,.1f}")
    in_process = results["in-process, 256 rows per call"] / results["in-process, 1 row per call"]
    http = results["HTTP, batched (as shipped)"] / results["HTTP, unbatched (SCORER_BATCH_MAX_ROWS=1)"]
    print(f"  batched/unbatched: in-process {in_process:.1f}x, HTTP {http:.1f}x")
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"hydrogen_torch-{stamp}.json"
    out.write_text(
        json.dumps({"device": str(runtime.device), "clients": args.clients, "results": results}, indent=1)
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
