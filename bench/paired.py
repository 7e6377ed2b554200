"""Benchmark: this checkout against an older one, side by side, their bursts interleaved.

``python bench/paired.py --before /tmp/before``, where ``/tmp/before`` is an older checkout with
its own venv (``git worktree add /tmp/before REV && make -C /tmp/before install-test``, as for
``bench/run.py --before``). For each model (``--models``, of ``bench/models.py``) both servers
run at once, this checkout's ``scorer serve`` and the older one's, with their defaults; each
round loads one and then the other with wrk (``--seconds`` each, order alternating), at each
client count (``--clients``), with the same single row in H2O's body. It reports, per model and
client count, each round's ratio (this checkout over the older one), their median, and each
side's median requests/s and p99.

Why a script of its own: ``bench/run.py --before`` measures the two builds one after the other,
minutes apart, and on this shared 2-core machine the same build's single-row rate moves by 20%
and more within minutes. A change worth 5% shows only between bursts seconds apart.

``--pin`` runs both servers on the second processor and wrk on the first, so that the load
generator never takes the servers' processor (each server is idle while the other is loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import BIN, Server, check_predictions, machine, ours_body, running, wrk  # noqa: E402

#: ``--pin``: the servers' processor, and wrk's.
SERVER_CPU, LOAD_CPU = 1, 0


def compare(
    model_name: str, before: Path, clients_set: tuple[int, ...], rounds: int, seconds: int, pin: bool
) -> list[str]:
    """One table row per client count: this checkout over ``before``, burst by burst."""
    work = Path(tempfile.mkdtemp(prefix=f"scorer-bench-paired-{model_name}-"))
    try:
        built = bench_models.MODELS[model_name](work)
        body = work / "row.json"
        body.write_text(json.dumps(ours_body(built.frame.iloc[:1])))
        prefix = ["taskset", "-c", str(SERVER_CPU)] if pin else []
        env = {"SCORER_LOG_LEVEL": "warning"}
        # Named as bench/run.py names them, whose check of the answers reads H2O's by these names.
        scorers = {"ours": BIN / "scorer", "ours-before": before / ".venv" / "bin" / "scorer"}
        sides = [
            Server(name, [*prefix, str(scorer), "serve", str(built.path), "--port", "{port}"],
                   "/readyz", "/model/score", ours_body, env)
            for name, scorer in scorers.items()
        ]  # fmt: skip
        rows = []
        with contextlib.ExitStack() as stack:
            bases = {side.name: stack.enter_context(running(side, work)) for side in sides}
            expected = built.expected(5)
            for side in sides:
                check_predictions(side, bases[side.name], built.frame.iloc[:5], expected)
                wrk(bases[side.name] + side.score_path, body, 16, 2)  # warm-up
            for clients in clients_set:
                found: dict[str, list[tuple[float, float]]] = {"ours": [], "ours-before": []}
                for round_ in range(rounds):
                    for side in sides if round_ % 2 == 0 else sides[::-1]:
                        rps, _, p99, errors = wrk(bases[side.name] + side.score_path, body, clients, seconds)
                        if errors:
                            raise RuntimeError(f"{side.name} answered {errors} errors")
                        found[side.name].append((rps, p99))
                ratios = [a[0] / b[0] for a, b in zip(found["ours"], found["ours-before"], strict=True)]
                after = [rps for rps, _ in found["ours"]]
                before_ = [rps for rps, _ in found["ours-before"]]
                p99s = [statistics.median(p99 for _, p99 in found[name]) for name in ("ours", "ours-before")]
                row = (
                    f"| {model_name} | {clients} | {statistics.median(after):,.0f} | "
                    f"{statistics.median(before_):,.0f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                    f"**{statistics.median(ratios):.3f}** | {p99s[0]:.1f} / {p99s[1]:.1f} |"
                )
                print(row, flush=True)
                rows.append(row)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="an older checkout with its own .venv")
    parser.add_argument("--models", default="breast-cancer,credit", help="of bench/models.py")
    parser.add_argument("--clients", default="64", help="wrk connection counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=4, help="seconds a burst")
    parser.add_argument("--pin", action="store_true", help="the servers on one processor, wrk on the other")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    if not (args.before / ".venv" / "bin" / "scorer").is_file():
        parser.error(f"{args.before} has no .venv/bin/scorer: make -C {args.before} install-test")
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            parser.error("--pin needs two processors")
        os.sched_setaffinity(0, {LOAD_CPU})  # wrk inherits it
    clients = tuple(int(c) for c in args.clients.split(","))
    lines = [
        f"Machine: {machine()}. Each round: {args.seconds} s of wrk on each server, order alternating;"
        f" {args.rounds} rounds{'; servers on one processor, wrk on the other' if args.pin else ''}.",
        "",
        "| model | clients | after req/s | before req/s | after/before per round | median"
        " | p99 ms after / before |",
        "|---|---|---|---|---|---|---|",
    ]
    for model_name in args.models.split(","):
        lines += compare(model_name, args.before, clients, args.rounds, args.seconds, args.pin)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
