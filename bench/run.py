"""Benchmark: scorer_core against `mlflow models serve` and MLServer on one scikit-learn MLflow model.

One command (``make bench``). Every server gets the same model, the same rows and the same load
generator (wrk, one thread, on loopback); each speaks its own payload format. Results are printed
as a table of absolute numbers and ratios ours/peer from this run, and written to
``bench/results/`` (JSON and Markdown). Run it on an otherwise quiet machine; it is noisy anyway,
which is why only same-run ratios are compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MLSERVER_BIN = HERE / ".venv-mlserver" / "bin"
RESULTS = HERE / "results"
LUA = HERE / "post.lua"
SINGLE_ROW_CLIENTS = (1, 16, 64)
LARGE_ROWS = (1_000, 10_000)
LARGE_CLIENTS = 2


@dataclass
class Measurement:
    server: str
    scenario: str
    rows_per_request: int
    clients: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


@dataclass
class Server:
    name: str
    command: list[str]
    ready_path: str
    score_path: str
    body: Callable[[list[str], np.ndarray], dict]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_model(directory: Path) -> tuple[Path, list[str], np.ndarray, object]:
    """Logistic regression on scikit-learn's bundled breast-cancer data (30 float features)."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    columns = [f"f{i}" for i in range(data.data.shape[1])]
    X = pd.DataFrame(data.data, columns=columns)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, data.target)
    path = directory / "model"
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(X, model.predict(X)), serialization_format="cloudpickle"
    )
    rng = np.random.default_rng(0)
    rows = data.data[rng.integers(0, len(data.data), LARGE_ROWS[-1])]
    return path, columns, rows, model


def ours_body(columns: list[str], rows: np.ndarray) -> dict:
    return {"fields": columns, "rows": [[repr(float(v)) for v in row] for row in rows]}


def mlflow_body(columns: list[str], rows: np.ndarray) -> dict:
    return {"dataframe_split": {"columns": columns, "data": rows.tolist()}}


def mlserver_body(columns: list[str], rows: np.ndarray) -> dict:
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
            for i, c in enumerate(columns)
        ],
    }


def servers(model: Path, work: Path, which: list[str]) -> list[Server]:
    port = free_port()
    found = []
    if "ours" in which:
        found.append(
            Server(
                "ours",
                [str(BIN / "scorer"), "serve", str(model), "--port", "{port}"],
                "/readyz",
                "/model/score",
                ours_body,
                {"SCORER_LOG_LEVEL": "warning"},
            )
        )
    if "ours-worker" in which:
        found.append(
            Server(
                "ours-worker",
                [str(BIN / "scorer"), "serve", str(model), "--port", "{port}"],
                "/readyz",
                "/model/score",
                ours_body,
                {"SCORER_LOG_LEVEL": "warning", "BATCH_WORKERS": "1"},
            )
        )
    if "mlflow" in which:
        found.append(
            Server(
                "mlflow",
                [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    str(model),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "{port}",
                    "--env-manager",
                    "local",
                ],
                "/ping",
                "/invocations",
                mlflow_body,
                {"PATH": f"{BIN}:{os.environ['PATH']}"},
            )
        )
    if "mlserver" in which and (MLSERVER_BIN / "mlserver").exists():
        repo = work / "mlserver"
        (repo / "bench").mkdir(parents=True, exist_ok=True)
        (repo / "bench" / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": "bench",
                    "implementation": "mlserver_mlflow.MLflowRuntime",
                    "parameters": {"uri": str(model)},
                    # Adaptive batching, as MLServer's docs show it.
                    "max_batch_size": 64,
                    "max_batch_time": 0.005,
                }
            )
        )
        found.append(
            Server(
                "mlserver",
                [str(MLSERVER_BIN / "mlserver"), "start", str(repo)],
                "/v2/health/ready",
                "/v2/models/bench/infer",
                mlserver_body,
                {"PATH": f"{MLSERVER_BIN}:{os.environ['PATH']}"},
                repo,
            )
        )
    del port
    return found


@contextmanager
def running(server: Server, work: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **server.env}
    if server.name == "mlserver":
        assert server.cwd is not None
        (server.cwd / "settings.json").write_text(
            json.dumps(
                {
                    "http_port": port,
                    "grpc_port": free_port(),
                    "metrics_port": free_port(),
                    # MLServer 1.7.1's default parallel workers die at start with current uvloop.
                    "parallel_workers": 0,
                    "metrics_endpoint": None,
                }
            )
        )
    command = [part.format(port=port) for part in server.command]
    with open(work / f"{server.name}.log", "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=server.cwd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited: {(work / f'{server.name}.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(base + server.ready_path, timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not become ready")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def check_predictions(
    server: Server, base: str, columns: list[str], rows: np.ndarray, expected: np.ndarray
) -> None:
    """Refuse to benchmark a server that answers wrongly."""
    reply = post(base + server.score_path, server.body(columns, rows))
    if server.name.startswith("ours"):
        got = [int(row[0]) for row in reply["score"]]
    elif server.name == "mlflow":
        got = [int(v) for v in reply["predictions"]]
    else:
        got = [int(v) for v in reply["outputs"][0]["data"]]
    if got != expected.tolist():
        raise RuntimeError(f"{server.name} returned wrong predictions: {got[:5]} vs {expected[:5].tolist()}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, body_file: Path, clients: int, seconds: int) -> tuple[float, float, float, int]:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "60s", "-s", str(LUA), url],
        env={**os.environ, "BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, p50, p99, errors


def in_process(model_path: Path, columns: list[str], rows: np.ndarray, repeats: int = 20) -> dict[int, float]:
    """The ceiling: pyfunc.predict on a ready DataFrame, no HTTP, no JSON."""
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_path))
    ceiling = {}
    for n in LARGE_ROWS:
        frame = pd.DataFrame(rows[:n], columns=columns)
        model.predict(frame)
        started = time.perf_counter()
        for _ in range(repeats):
            model.predict(frame)
        ceiling[n] = n * repeats / (time.perf_counter() - started)
    return ceiling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk run")
    parser.add_argument("--servers", default="ours,ours-worker,mlflow,mlserver")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scorer-bench-"))
    model_path, columns, rows, model = build_model(work)
    expected = model.predict(rows[:5])  # type: ignore[attr-defined]
    measurements: list[Measurement] = []
    for server in servers(model_path, work, args.servers.split(",")):
        bodies = {}
        for n in (1, *LARGE_ROWS):
            bodies[n] = work / f"{server.name}-{n}.json"
            bodies[n].write_text(json.dumps(server.body(columns, rows[:n])))
        with running(server, work) as base:
            check_predictions(server, base, columns, rows[:5], expected)
            url = base + server.score_path
            wrk(url, bodies[1], 16, 2)  # warm-up
            for clients in SINGLE_ROW_CLIENTS:
                rps, p50, p99, errors = wrk(url, bodies[1], clients, args.seconds)
                measurements.append(
                    Measurement(server.name, f"1 row, {clients} clients", 1, clients, rps, p50, p99, errors)
                )
                print(
                    f"{server.name:12} 1 row x{clients:<3} {rps:9.0f} req/s",
                    _latency(p50, p99, errors),
                    flush=True,
                )
            for n in LARGE_ROWS:
                rps, p50, p99, errors = wrk(url, bodies[n], LARGE_CLIENTS, args.seconds)
                measurements.append(
                    Measurement(
                        server.name,
                        f"{n} rows, {LARGE_CLIENTS} clients",
                        n,
                        LARGE_CLIENTS,
                        rps,
                        p50,
                        p99,
                        errors,
                    )
                )
                print(
                    f"{server.name:12} {n} rows   {rps * n:9.0f} rows/s",
                    _latency(p50, p99, errors),
                    flush=True,
                )
    ceiling = in_process(model_path, columns, rows)
    report = render(measurements, ceiling)
    print(report)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(
        json.dumps(
            {
                "date": stamp,
                "machine": machine(),
                "in_process_rows_per_s": ceiling,
                "measurements": [asdict(m) for m in measurements],
            },
            indent=2,
        )
    )
    (RESULTS / f"{stamp}.md").write_text(report)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _latency(p50: float, p99: float, errors: int) -> str:
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {errors}"


def machine() -> str:
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, {platform.platform()}"


def render(measurements: list[Measurement], ceiling: dict[int, float]) -> str:
    by = {(m.server, m.scenario): m for m in measurements}
    peers = sorted({m.server for m in measurements} - {"ours", "ours-worker"})
    lines = [f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.", ""]
    names = [s for s in ("ours", "ours-worker", *peers) if any(m.server == s for m in measurements)]
    lines.append("| scenario | " + " | ".join(names) + " | " + " | ".join(f"ours/{p}" for p in peers) + " |")
    lines.append("|---" * (1 + len(names) + len(peers)) + "|")
    for scenario in dict.fromkeys(m.scenario for m in measurements):
        cells = []
        for name in names:
            m = by.get((name, scenario))
            if m is None:
                cells.append("")
            elif m.rows_per_request == 1:
                cells.append(
                    f"{m.requests_per_s:,.0f} req/s, p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms"
                    + (f", {m.errors} errors" if m.errors else "")
                )
            else:
                cells.append(
                    f"{m.rows_per_s:,.0f} rows/s, p99 {m.p99_ms:.0f} ms"
                    + (f", {m.errors} errors" if m.errors else "")
                )
        ratios = []
        for peer in peers:
            ours = max(
                (by[(n, scenario)] for n in ("ours", "ours-worker") if (n, scenario) in by),
                key=lambda m: m.requests_per_s,
                default=None,
            )
            theirs = by.get((peer, scenario))
            ratios.append(
                f"{ours.requests_per_s / theirs.requests_per_s:.1f}x"
                if ours and theirs and theirs.requests_per_s
                else ""
            )
        lines.append(f"| {scenario} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines.append("")
    for n, rate in ceiling.items():
        best = max(
            (m.rows_per_s for m in measurements if m.server.startswith("ours") and m.rows_per_request == n),
            default=0,
        )
        lines.append(
            f"In-process pyfunc ceiling, {n:,} rows per call: {rate:,.0f} rows/s; "
            f"ours reaches {best / rate:.0%} of it."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
