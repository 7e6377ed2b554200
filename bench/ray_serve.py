"""Benchmark: the HTTP API on Ray Serve replicas (``scorer_ray:build``) against ``scorer serve``.

The same model (``--model``, from ``bench/models.py``), the same single-row body and the same
load generator (wrk, one thread) for each, in rounds so that the machine's noise falls on all
of them alike: ``scorer serve`` alone, then Serve's HTTP proxy in front of 1 and of 2 replicas.
Reports requests/s and p99 per round and the median ratios. On a machine with few cores the
replicas share them with Serve's proxy and wrk; the figure that matters is what Serve's hop
costs, and what replicas buy where cores are free.

    .venv/bin/python bench/ray_serve.py --model breast-cancer --seconds 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import Server, free_port, ours_body, running, wrk  # noqa: E402

from conformance.target import wait_ready  # noqa: E402

BIN = Path(sys.executable).parent


def ready(base: str, timeout: float = 180) -> None:
    wait_ready(base, timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="breast-cancer")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()

    import ray
    import scorer_ray
    from ray import serve

    names = ["scorer serve", "Serve, 1 replica", "Serve, 2 replicas"]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="scorer-bench-ray-") as tmp:
        work = Path(tmp)
        built = bench_models.MODELS[args.model](work)
        body = work / "one.json"
        body.write_text(json.dumps(ours_body(built.frame.iloc[:1])))
        port = free_port()
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve_base = f"http://127.0.0.1:{port}"
        ours = Server(
            "ours",
            [str(BIN / "scorer"), "serve", str(built.path), "--port", "{port}"],
            "/readyz",
            "/model/score",
            ours_body,
        )
        try:
            for round_ in range(args.rounds):
                with running(ours, work) as base:
                    wrk(base + "/model/score", body, 16, 2)  # warm-up
                    rps, _, p99, errors = wrk(base + "/model/score", body, args.clients, args.seconds)
                    results["scorer serve"].append((rps, p99))
                    print(f"round {round_}: scorer serve {rps:,.0f} req/s p99 {p99:.0f} ms ({errors} errors)")
                for replicas in (1, 2):
                    app = scorer_ray.build({"model_path": str(built.path), "num_replicas": str(replicas)})
                    serve.run(app, name="bench", route_prefix="/", blocking=False)
                    ready(serve_base)
                    wrk(serve_base + "/model/score", body, 16, 2)
                    rps, _, p99, errors = wrk(serve_base + "/model/score", body, args.clients, args.seconds)
                    key = f"Serve, {replicas} replica{'s' if replicas > 1 else ''}"
                    results[key].append((rps, p99))
                    print(f"round {round_}: {key} {rps:,.0f} req/s p99 {p99:.0f} ms ({errors} errors)")
                    serve.delete("bench")
        finally:
            serve.shutdown()
            ray.shutdown()
    base_rps = statistics.median(r for r, _ in results["scorer serve"])
    print(f"\n{args.model}, 1 row a request, {args.clients} clients, {os.cpu_count()} cores, ", end="")
    print(f"medians of {args.rounds} rounds")
    print("| server | req/s | p99 ms | vs scorer serve |\n|---|---|---|---|")
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        print(f"| {name} | {rps:,.0f} | {p99:.0f} | {rps / base_rps:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
