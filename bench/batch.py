"""Benchmark: ``scorer batch`` against a plain pandas script, as whole processes, on one file.

The script is what a data scientist would write: ``pd.read_csv``, ``pyfunc.predict`` on the
frame, ``to_csv`` of the id and the prediction. Both run as separate processes on the same CSV
(``--rows`` rows of a model of ``bench/models.py``, with an id column); the table gives wall
time, rows/s, peak resident memory (GNU time's ``%M``) and the ratio, and checks that
both wrote the same predictions. The batch-scoring issue's goal: at least 50% of the script's
rows/s on 2,000,000 rows, with no more peak memory. ``--spark`` adds ``scorer batch --engine
spark --spark-master local[2]`` on the same file (wall time only: its memory is the JVM's and
the executors', which are not the command's process).

    .venv/bin/python bench/batch.py --rows 2000000 --models breast-cancer,mixed [--spark]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402

BIN = Path(sys.executable).parent
SCRIPT = """
import sys
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_csv(sys.argv[2])
out = pd.DataFrame({"id": frame["id"], "prediction": model.predict(frame.drop(columns=["id"]))})
out.to_csv(sys.argv[3], index=False)
"""


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one process.

    The peak is GNU time's (``%M``): a child forked from this process starts with this
    process's resident size as its high-water mark, which ``wait4``'s ``ru_maxrss`` would report
    for any child smaller than us (this process holds the benchmark's frame)."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        started = time.perf_counter()
        process = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", peak.name, *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        took = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {process.stderr.decode()[-2000:]}")
        return took, int(peak.read().split()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--models", default="breast-cancer,mixed")
    parser.add_argument("--spark", action="store_true", help="also time --engine spark on local[2]")
    args = parser.parse_args()
    spark_header = " spark local[2] | rows/s | vs script |" if args.spark else ""
    lines = [
        f"{args.rows:,} rows of CSV, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "",
        "| model | scorer batch | rows/s | peak MiB | pandas script | rows/s | peak MiB | rows/s ratio |"
        + spark_header,
        "|---|---|---|---|---|---|---|---|" + "---|---|---|" * bool(args.spark),
    ]
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="scorer-bench-batch-") as tmp:
            work = Path(tmp)
            built = bench_models.MODELS[name](work)
            repeats = -(-args.rows // len(built.frame))
            frame = pd.concat([built.frame] * repeats, ignore_index=True).iloc[: args.rows]
            frame.insert(0, "id", range(len(frame)))
            source = work / "rows.csv"
            frame.to_csv(source, index=False)
            del frame
            ours, ours_mem = timed(
                [
                    str(BIN / "scorer"),
                    "batch",
                    str(built.path),
                    str(source),
                    str(work / "ours.csv"),
                    "--id-column",
                    "id",
                ]
            )
            (work / "plain.py").write_text(SCRIPT)
            plain, plain_mem = timed(
                [
                    sys.executable,
                    str(work / "plain.py"),
                    str(built.path),
                    str(source),
                    str(work / "plain.csv"),
                ]
            )
            a = pd.read_csv(work / "ours.csv")
            b = pd.read_csv(work / "plain.csv")
            if list(a["id"]) != list(b["id"]) or list(a.iloc[:, -1].astype(str)) != list(
                b["prediction"].astype(str)
            ):
                raise RuntimeError(f"{name}: scorer batch and the pandas script disagree")
            line = (
                f"| {name} | {ours:.1f} s | {args.rows / ours:,.0f} | {ours_mem:,.0f} | {plain:.1f} s | "
                f"{args.rows / plain:,.0f} | {plain_mem:,.0f} | {plain / ours:.2f}x |"
            )
            if args.spark:
                spark, _ = timed(
                    [str(BIN / "scorer"), "batch", str(built.path), str(source), str(work / "spark.csv"),
                     "--id-column", "id", "--engine", "spark", "--spark-master", "local[2]"]
                )  # fmt: skip
                parts = sorted((work / "spark.csv").glob("part-*.csv"))
                c = pd.concat([pd.read_csv(part) for part in parts]).sort_values("id")
                predictions = list(c.iloc[:, -1].astype(str))
                if list(c["id"]) != list(a["id"]) or predictions != list(a.iloc[:, -1].astype(str)):
                    raise RuntimeError(f"{name}: the Spark engine and the local one disagree")
                line += f" {spark:.1f} s | {args.rows / spark:,.0f} | {plain / spark:.2f}x |"
            lines.append(line)
            print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
