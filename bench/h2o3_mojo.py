"""Benchmark: h2o3-mojo-scorer's column batches against H2O's own ways of scoring a MOJO from Python.

    .venv/bin/python bench/h2o3_mojo.py [--rows 10000] [--model gbm_binomial]

Scores the same rows of a fixture MOJO (plugins/h2o3_mojo/tests/fixtures) with:

- ``batch``: ``H2O3MojoRuntime.score``, one JVM call per batch (what the server runs);
- ``http``: the same through ``scorer serve`` over loopback, one client posting H2O's string cells;
- ``per-row``: ``EasyPredictModelWrapper.predictRaw`` called from Python once per row, through
  jpype: the obvious way to use genmodel from Python;
- ``mojo_predict_pandas``: ``h2o.mojo_predict_pandas``, which writes a CSV, runs genmodel's
  ``PredictCsv`` in a new ``java`` process and reads the CSV back.

Prints rows/s for each and the ratios batch/peer from this run (the machine is shared and noisy),
and writes them to ``bench/results/``. Every method is first checked to give the same predictions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = ROOT / "plugins" / "h2o3_mojo" / "tests" / "fixtures"
RESULTS = HERE / "results"


def request_rows(rows: int) -> dict[str, Any]:
    frame = json.loads((FIXTURES / "test_frame.json").read_text())
    repeated = (frame["rows"] * (rows // len(frame["rows"]) + 1))[:rows]
    return {"fields": frame["fields"], "rows": repeated}


def best_rate(rows: int, run: Callable[[], Any], seconds: float) -> float:
    """Rows/s of the fastest repetition within ``seconds`` (at least three)."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    repetitions = 0
    while repetitions < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        repetitions += 1
    return rows / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--model", default="gbm_binomial")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import jpype
    import pandas as pd
    from scorer_h2o3_mojo.jvm import genmodel_jar
    from scorer_h2o3_mojo.runtime import H2O3MojoRuntime

    from conformance import start_server
    from scorer_core.wire.cells import build_frame

    mojo = FIXTURES / "mojos" / f"{args.model}.zip"
    body = request_rows(args.rows)
    runtime = H2O3MojoRuntime()
    runtime.load(mojo)
    frame = build_frame(body["fields"], body["rows"], runtime.schema.inputs)
    reference = np.asarray(runtime.score(frame)["predict"])

    def batch() -> Any:
        return runtime.score(frame)

    wrapper_class = jpype.JClass("hex.genmodel.easy.EasyPredictModelWrapper")
    config = jpype.JClass("hex.genmodel.easy.EasyPredictModelWrapper$Config")()
    model = jpype.JClass("hex.genmodel.MojoModel").load(str(mojo), True)
    wrapper = wrapper_class(config.setModel(model).setConvertUnknownCategoricalLevelsToNa(True))
    row_data = jpype.JClass("hex.genmodel.easy.RowData")
    columns = [(name, frame[name]) for name in frame.columns]

    def per_row() -> list[float]:
        out = []
        for r in range(frame.num_rows):
            row = row_data()
            for name, values in columns:
                value = values[r]
                if value is not None and value == value:
                    row.put(name, value if isinstance(value, str) else jpype.JDouble(value))
            out.append(wrapper.predictRaw(row, 0.0)[0])
        return out

    table = pd.DataFrame(body["rows"], columns=body["fields"]).replace("", None)

    def predict_pandas() -> Any:
        import h2o

        return h2o.mojo_predict_pandas(table, str(mojo), genmodel_jar_path=str(genmodel_jar()), verbose=False)

    # Every method must agree with the batch path before it is timed.
    domain = [f.name for f in runtime.schema.outputs[1:]]
    assert [domain[int(i)] for i in per_row()] == list(reference), "per-row predictions differ"
    assert list(predict_pandas()["predict"].astype(str)) == list(reference), "mojo_predict_pandas differs"

    rates = {
        "batch": best_rate(args.rows, batch, args.seconds),
        "per-row": best_rate(args.rows, per_row, args.seconds),
        "mojo_predict_pandas": best_rate(args.rows, predict_pandas, args.seconds),
    }
    encoded = json.dumps(body).encode()
    with start_server(mojo, env={"SCORER_LOAD_PLUGINS": "h2o3_mojo"}, record_headers=False) as target:

        def http() -> Any:
            request = urllib.request.Request(
                f"{target.base_url}/model/score", encoded, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request) as reply:
                return reply.read()

        assert [row[0] for row in json.loads(http())["score"]] == list(reference), "HTTP differs"
        rates["http"] = best_rate(args.rows, http, args.seconds)

    print(f"{args.model}, {args.rows} rows per call")
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:12,.0f} rows/s   batch/{name}: {rates['batch'] / rate:6.1f}x")
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"h2o3_mojo-{stamp}.json"
    out.write_text(json.dumps({"model": args.model, "rows": args.rows, "rows_per_s": rates}, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
