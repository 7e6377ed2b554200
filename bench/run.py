"""Benchmark: scorer_core against `mlflow models serve` and MLServer on a set of MLflow models.

One command (``make bench``). For each model of the set (``bench/models.py``, ``--models``),
every server gets the same model, the same rows and the same load generator (wrk, one thread,
on loopback); each speaks its own payload format. A bare ASGI app that only parses the body
(``bench/ceiling_app.py``) is the ceiling row. Results are printed as tables of absolute numbers
and ratios ours/peer from this run, and written to ``bench/results/`` (JSON and Markdown). Run
it on an otherwise quiet machine; it is noisy anyway, which is why only same-run ratios are
compared.
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
import statistics
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
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402  (bench/models.py: the benchmark set)

from conformance.target import stop_process, wait_ready  # noqa: E402

ROOT = HERE.parent
BIN = Path(sys.executable).parent
MLSERVER_BIN = HERE / ".venv-mlserver" / "bin"
RESULTS = HERE / "results"
LUA = HERE / "post.lua"
SINGLE_ROW_CLIENTS = (1, 16, 64)
LARGE_ROWS = (1_000, 10_000)
LARGE_CLIENTS = 2
#: The model's name for the Open Inference Protocol's requests (ours-oip), as MLServer's is "bench".
OIP_NAME = "bench"
#: Our servers answering H2O's protocol, the best of which the peers are compared with.
H2O_SERVERS = ("ours", "ours-worker")


@dataclass
class Measurement:
    model: str
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
    body: Callable[[pd.DataFrame], dict]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_model(directory: Path) -> tuple[Path, list[str], np.ndarray, object]:
    """The breast-cancer model as ``(path, columns, rows, estimator)`` (bench/isolation.py)."""
    built = bench_models.breast_cancer(directory)
    return built.path, list(built.frame.columns), built.frame.to_numpy(), built.model


def ours_body(frame: pd.DataFrame) -> dict:
    return {"fields": list(frame.columns), "rows": bench_models.cells(frame)}


def mlflow_body(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": bench_models.typed_rows(frame)}}


def mlserver_body(frame: pd.DataFrame) -> dict:
    return {"parameters": {"content_type": "pd"}, "inputs": bench_models.v2_inputs(frame)}


def servers(model: Path, work: Path, which: list[str], before: Path | None = None) -> list[Server]:
    found = []
    if "ceiling" in which:
        found.append(
            Server(
                "ceiling",
                [str(BIN / "uvicorn"), "bench.ceiling_app:app", "--http", "httptools", "--loop", "uvloop",
                 "--port", "{port}", "--log-level", "warning", "--no-access-log"],
                "/readyz",
                "/model/score",
                ours_body,
                cwd=ROOT,
            )
        )  # fmt: skip
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
    if "ours-oip" in which:
        # The same server, asked in the Open Inference Protocol with MLServer's body.
        found.append(
            Server(
                "ours-oip",
                [str(BIN / "scorer"), "serve", str(model), "--port", "{port}"],
                "/readyz",
                f"/v2/models/{OIP_NAME}/infer",
                mlserver_body,
                {"SCORER_LOG_LEVEL": "warning", "MODEL_NAME": OIP_NAME},
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
    if before is not None:
        # The same two servers from an older checkout (its own venv), for before/after figures.
        scorer = str(before / ".venv" / "bin" / "scorer")
        for name, workers in (("ours-before", {}), ("ours-worker-before", {"BATCH_WORKERS": "1"})):
            if name.removesuffix("-before") in which:
                found.append(
                    Server(
                        name,
                        [scorer, "serve", str(model), "--port", "{port}"],
                        "/readyz",
                        "/model/score",
                        ours_body,
                        {"SCORER_LOG_LEVEL": "warning", **workers},
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
        log = work / f"{server.name}.log"
        wait_ready(base, 180, process=process, log=log.read_text, path=server.ready_path)
        yield base
    finally:
        stop_process(process)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def check_predictions(server: Server, base: str, frame: pd.DataFrame, expected: list[str]) -> None:
    """Refuse to benchmark a server that answers wrongly (the ceiling answers nothing real)."""
    if server.name == "ceiling":
        return
    reply = post(base + server.score_path, server.body(frame))
    if server.name in H2O_SERVERS or server.name.endswith("-before"):
        got = [str(row[0]) for row in reply["score"]]
    elif server.name == "mlflow":
        got = [str(v) for v in reply["predictions"]]
    else:
        got = [str(v) for v in reply["outputs"][0]["data"]]
    if got != expected:
        raise RuntimeError(f"{server.name} returned wrong predictions: {got[:5]} vs {expected[:5]}")


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


def in_process(built: bench_models.Built, repeats: int = 20) -> dict[int, float]:
    """The ceiling: the model called on ready rows in this process, no HTTP, no JSON. The median
    of ``repeats`` calls after a warm-up, so that a JVM's JIT settling (MOJOs) or a collection
    does not decide it."""
    ceiling = {}
    for n in built.large_rows:
        call = built.in_process(n)
        for _ in range(5):
            call()
        took = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            took.append(time.perf_counter() - started)
        ceiling[n] = n / statistics.median(took)
    return ceiling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk run")
    parser.add_argument("--servers", default="ours,ours-worker,ours-oip,mlflow,mlserver,ceiling")
    parser.add_argument("--models", default=",".join(bench_models.MODELS), help="of bench/models.py")
    parser.add_argument(
        "--before",
        type=Path,
        help="an older checkout with its own .venv: its ours and ours-worker run too, for a "
        "before/after table (git worktree add /tmp/before REV && make -C /tmp/before install-test)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    measurements: list[Measurement] = []
    ceilings: dict[str, dict[int, float]] = {}
    for model_name in args.models.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"scorer-bench-{model_name}-"))
        built = bench_models.MODELS[model_name](work)
        measurements += measure(model_name, built, work, args.servers.split(","), args.seconds, args.before)
        ceilings[model_name] = in_process(built)
        shutil.rmtree(work, ignore_errors=True)
    report = render(measurements, ceilings)
    print(report)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(
        json.dumps(
            {
                "date": stamp,
                "machine": machine(),
                "in_process_rows_per_s": ceilings,
                "measurements": [asdict(m) for m in measurements],
            },
            indent=2,
        )
    )
    (RESULTS / f"{stamp}.md").write_text(report)
    return 0


def measure(
    model_name: str,
    built: bench_models.Built,
    work: Path,
    which: list[str],
    seconds: int,
    before: Path | None = None,
) -> list[Measurement]:
    """Every server of ``which`` on one model: single rows at 1, 16 and 64 clients, then large
    requests at 2 clients, then (for a model that explains itself) contributions."""
    expected = built.expected(5)
    found: list[Measurement] = []
    if not built.peers:
        which = [name for name in which if name not in ("mlflow", "mlserver")]
    for server in servers(built.path, work, which, before):
        bodies = {}
        for n in (1, *built.large_rows):
            bodies[n] = work / f"{server.name}-{n}.json"
            bodies[n].write_text(json.dumps(server.body(built.frame.iloc[:n])))
        explains = built.contributions and server.name.startswith("ours") and server.name != "ours-oip"
        if explains:
            server.env["SHAPLEY_TYPES_ENABLED"] = "ALL"
        with running(server, work) as base:
            check_predictions(server, base, built.frame.iloc[:5], expected)
            url = base + server.score_path
            wrk(url, bodies[1], 16, 2)  # warm-up
            for clients in SINGLE_ROW_CLIENTS:
                found.append(run_scenario(model_name, server.name, url, bodies[1], 1, clients, seconds))
            for n in built.large_rows:
                found.append(run_scenario(model_name, server.name, url, bodies[n], n, LARGE_CLIENTS, seconds))
            if explains:
                found += contributions(model_name, server.name, built, base, work, seconds)
    return found


CONTRIBUTIONS = ((1, 16), (1_000, 2))


def run_scenario(
    model_name: str,
    server: str,
    url: str,
    body: Path,
    rows: int,
    clients: int,
    seconds: int,
    label: str | None = None,
) -> Measurement:
    """One wrk run of ``body`` (``rows`` rows a request) at ``clients`` connections, printed."""
    rps, p50, p99, errors = wrk(url, body, clients, seconds)
    scenario = f"{label or (f'{rows} rows' if rows > 1 else '1 row')}, {clients} clients"
    rate = f"{rps:9.0f} req/s" if rows == 1 else f"{rps * rows:9.0f} rows/s"
    print(f"{model_name:14} {server:12} {scenario:38} {rate}", _latency(p50, p99, errors), flush=True)
    return Measurement(model_name, server, scenario, rows, clients, rps, p50, p99, errors)


def contributions(
    model_name: str, server: str, built: bench_models.Built, base: str, work: Path, seconds: int
) -> list[Measurement]:
    """``/model/contribution`` (ORIGINAL Shapley values): single rows at 16 clients and 1,000-row
    requests at 2."""
    found = []
    url = base + "/model/contribution"
    for n, clients in CONTRIBUTIONS:
        body = work / f"{server}-contribution-{n}.json"
        body.write_text(
            json.dumps({**ours_body(built.frame.iloc[:n]), "requestShapleyValueType": "ORIGINAL"})
        )
        reply = post(url, json.loads(body.read_text()))
        got = [len(group["contributions"]) for group in reply["contributionGroups"]]
        if not got or any(count != n for count in got):
            raise RuntimeError(f"{server} returned {got} contribution rows per group, not {n}")
        found.append(
            run_scenario(
                model_name,
                server,
                url,
                body,
                n,
                clients,
                seconds,
                f"contributions, {n:,} row{'s' if n > 1 else ''}",
            )
        )
    return found


def _latency(p50: float, p99: float, errors: int) -> str:
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {errors}"


def machine() -> str:
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, {platform.platform()}"


def render(measurements: list[Measurement], ceilings: dict[str, dict[int, float]]) -> str:
    lines = [f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.", ""]
    for model_name in dict.fromkeys(m.model for m in measurements):
        lines += [f"### {model_name}", ""]
        mine = [m for m in measurements if m.model == model_name]
        lines += _table([m for m in mine if not m.server.endswith("-before")], ceilings.get(model_name, {}))
        lines.append("")
        if any(m.server.endswith("-before") for m in mine):
            lines += [f"{model_name}, before and after (`--before`):", ""]
            lines += _before_after(mine)
            lines.append("")
    return "\n".join(lines)


def _before_after(measurements: list[Measurement]) -> list[str]:
    by = {(m.server, m.scenario): m for m in measurements}
    lines = [
        "| scenario | ours before | ours | after/before | ours-worker before | ours-worker | after/before |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in dict.fromkeys(m.scenario for m in measurements):
        cells = []
        for name in ("ours", "ours-worker"):
            old, new = by.get((f"{name}-before", scenario)), by.get((name, scenario))
            for m in (old, new):
                cells.append("" if m is None else _rate(m))
            cells.append(
                f"{new.requests_per_s / old.requests_per_s:.2f}x"
                if old and new and old.requests_per_s
                else ""
            )
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines


def _rate(m: Measurement) -> str:
    if m.rows_per_request == 1:
        return f"{m.requests_per_s:,.0f} req/s, p99 {m.p99_ms:.1f} ms"
    return f"{m.rows_per_s:,.0f} rows/s, p99 {m.p99_ms:.0f} ms"


def _table(measurements: list[Measurement], ceiling: dict[int, float]) -> list[str]:
    by = {(m.server, m.scenario): m for m in measurements}
    peers = sorted({m.server for m in measurements} - {*H2O_SERVERS, "ours-oip"})
    ours_names = [s for s in (*H2O_SERVERS, "ours-oip") if any(m.server == s for m in measurements)]
    names = [*ours_names, *peers]
    # The Open Inference Protocol's row: against our H2O path (the same server, the same rows) and
    # against MLServer (the same body, the same protocol).
    oip = [("ours-oip", "ours"), ("ours-oip", "mlserver")] if "ours-oip" in ours_names else []
    ratio_names = [f"ours/{p}" for p in peers] + [f"{a}/{b}" for a, b in oip]
    lines = ["| scenario | " + " | ".join(names) + " | " + " | ".join(ratio_names) + " |"]
    lines.append("|---" * (1 + len(names) + len(ratio_names)) + "|")
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
        ours = max(
            (by[(n, scenario)] for n in H2O_SERVERS if (n, scenario) in by),
            key=lambda m: m.requests_per_s,
            default=None,
        )
        ratios = []
        for peer in peers:
            theirs = by.get((peer, scenario))
            ratios.append(
                f"{ours.requests_per_s / theirs.requests_per_s:.2f}x"
                if ours and theirs and theirs.requests_per_s
                else ""
            )
        for a, b in oip:
            first, second = by.get((a, scenario)), by.get((b, scenario))
            ratios.append(
                f"{first.requests_per_s / second.requests_per_s:.2f}x"
                if first and second and second.requests_per_s
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
            f"In-process, {n:,} rows per call: {rate:,.0f} rows/s; ours reaches {best / rate:.0%} of it."
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
