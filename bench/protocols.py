"""Benchmark: the Open Inference Protocol against the H2O path, on one server, interleaved.

``python bench/protocols.py``. For each model (``--models``, of ``bench/models.py``; the six
MLflow models by default) one server, asked the same rows in both protocols: H2O's body on
``/model/score``, MLServer's ``pd`` body on ``/v2/models/bench/infer`` (as ``bench/run.py``'s
``ours-oip`` row sends). Each round runs both once, for ``--seconds`` each, in alternating order,
at each client count; reported per round and as the median of the per-round ratios OIP/H2O.

Why a script of its own: ``bench/run.py`` measures each server's scenarios in a block, minutes
apart, and on a shared 2-core machine two blocks differ by 20-30% for no reason of their own.
The protocols' goal (OIP within 10% of H2O's requests/s) needs the two side by side, on the same
process, in the same minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import (  # noqa: E402
    BIN,
    OIP_NAME,
    RESULTS,
    Server,
    check_predictions,
    machine,
    mlserver_body,
    ours_body,
    running,
    wrk,
)

MLFLOW_MODELS = ("breast-cancer", "hgb", "mixed", "credit", "churn", "lightgbm")
CLIENTS = (1, 16, 64)


def compare(
    model_name: str, rounds: int, seconds: int, clients_set: tuple[int, ...] = CLIENTS
) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix=f"scorer-protocols-{model_name}-"))
    try:
        built = bench_models.MODELS[model_name](work)
        command = [str(BIN / "scorer"), "serve", str(built.path), "--port", "{port}"]
        env = {"SCORER_LOG_LEVEL": "warning", "MODEL_NAME": OIP_NAME}
        h2o = Server("ours", command, "/readyz", "/model/score", ours_body, env)
        oip = Server("ours-oip", command, "/readyz", f"/v2/models/{OIP_NAME}/infer", mlserver_body, env)
        bodies = {}
        for server in (h2o, oip):
            bodies[server.name] = work / f"{server.name}-1.json"
            bodies[server.name].write_text(json.dumps(server.body(built.frame.iloc[:1])))
        found = []
        with running(h2o, work) as base:
            expected = built.expected(5)
            for server in (h2o, oip):
                check_predictions(server, base, built.frame.iloc[:5], expected)
                wrk(base + server.score_path, bodies[server.name], 16, 2)  # warm-up
            for clients in clients_set:
                rates: dict[str, list[float]] = {"ours": [], "ours-oip": []}
                for round_ in range(rounds):
                    order = (h2o, oip) if round_ % 2 == 0 else (oip, h2o)
                    for server in order:
                        rps, _, _, errors = wrk(
                            base + server.score_path, bodies[server.name], clients, seconds
                        )
                        if errors:
                            raise RuntimeError(f"{server.name} answered {errors} errors")
                        rates[server.name].append(rps)
                ratios = [o / h for o, h in zip(rates["ours-oip"], rates["ours"], strict=True)]
                line = {
                    "model": model_name,
                    "clients": clients,
                    "h2o_req_s": rates["ours"],
                    "oip_req_s": rates["ours-oip"],
                    "ratios": ratios,
                    "median_ratio": statistics.median(ratios),
                }
                print(
                    f"{model_name:14} {clients:3} clients: OIP/H2O per round "
                    f"{' '.join(f'{r:.2f}' for r in ratios)}; median {line['median_ratio']:.2f} "
                    f"(H2O median {statistics.median(rates['ours']):,.0f} req/s)",
                    flush=True,
                )
                found.append(line)
        return found
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(lines: list[dict[str, object]]) -> str:
    out = [
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.",
        "",
        "| model | clients | H2O req/s (median) | OIP req/s (median) | OIP/H2O per round | median |",
        "|---|---|---|---|---|---|",
    ]
    for line in lines:
        h2o: list[float] = line["h2o_req_s"]  # type: ignore[assignment]
        oip: list[float] = line["oip_req_s"]  # type: ignore[assignment]
        ratios: list[float] = line["ratios"]  # type: ignore[assignment]
        out.append(
            f"| {line['model']} | {line['clients']} | {statistics.median(h2o):,.0f} | "
            f"{statistics.median(oip):,.0f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
            f"{line['median_ratio']:.2f}x |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MLFLOW_MODELS), help="of bench/models.py")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=4, help="duration of each wrk run")
    parser.add_argument(
        "--clients", default=",".join(map(str, CLIENTS)), help="wrk connection counts, comma-separated"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    lines = []
    for model_name in args.models.split(","):
        clients = tuple(int(c) for c in args.clients.split(","))
        lines += compare(model_name, args.rounds, args.seconds, clients)
    report = render(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    (RESULTS / f"protocols-{stamp}.md").write_text(report)
    (RESULTS / f"protocols-{stamp}.json").write_text(json.dumps(lines, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
