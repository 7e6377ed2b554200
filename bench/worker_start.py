"""Benchmark: what starting and replacing worker processes costs, forked from a forkserver
(``SCORER_WORKER_FORKSERVER=true``, the default) against each a fresh interpreter (``false``).

``python bench/worker_start.py``. For each model (``--models``, of ``bench/models.py``) and each
round (``--rounds``), a ``scorer serve`` with ``BATCH_WORKERS`` (``--workers``) in each mode, the
two modes alternating so that the machine's drift hits both alike. Reported per model, as
medians over the rounds:

- **ready**: seconds from starting the server to ``/readyz`` answering 200;
- **CPU**: CPU-seconds the server and everything it started had used by then;
- **PSS**: the worker processes' (and the forkserver's) proportional set size once ready, in MB:
  their memory, each shared page counted once in all;
- **replaced**: seconds from killing one worker (SIGKILL) to the server counting its replacement
  ready (``scorer_worker_restarts``), while nothing else runs.

Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import free_port  # noqa: E402

MODES = {"forked": "true", "fresh": "false"}
TICKS = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process under it, read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def cpu_seconds(pid: int) -> float:
    """The CPU ``pid`` used, with that of its children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICKS  # utime, stime, cutime, cstime


def pss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except OSError:
        return 0, ""


def restarts(base: str) -> int:
    _, text = get(base + "/metrics")
    found = re.search(r"^scorer_worker_restarts_total (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else -1


def one_server(model: Path, workers: int, mode: str, log: Path) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BATCH_WORKERS": str(workers), "SCORER_WORKER_FORKSERVER": MODES[mode]}
    command = [sys.executable, "-m", "scorer_core.cli", "serve", str(model), "--port", str(port)]
    with open(log, "wb") as output:
        started = time.monotonic()
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        while get(base + "/readyz")[0] != 200:
            if server.poll() is not None or time.monotonic() - started > 300:
                raise RuntimeError(f"the server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.02)
        ready = time.monotonic() - started
        tree = descendants(server.pid)
        cpu = sum(cpu_seconds(pid) for pid in tree)
        others = [pid for pid in tree if pid != server.pid]
        pss = sum(pss_mb(pid) for pid in others)
        victim = sorted(p for p in others if _is_worker(p, server.pid))[0]
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while restarts(base) < 1:
            if time.monotonic() - killed > 120:
                raise RuntimeError(f"no replacement within 120 s: {log.read_text()[-3000:]}")
            time.sleep(0.02)
        replaced = time.monotonic() - killed
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {"ready": ready, "cpu": cpu, "pss": pss, "replaced": replaced}


def _is_worker(pid: int, server: int) -> bool:
    """A worker: the server's child running the worker module, or a child of its forkserver."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    parent = int(stat[1])
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    if parent == server:  # a fresh worker, or the forkserver (whose command line names the module too)
        return b"workers.worker" in command and b"_forkserver_main.py" not in command
    return b"_forkserver_main.py" in Path(f"/proc/{parent}/cmdline").read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="breast-cancer,credit,lightgbm,ht-text")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"BATCH_WORKERS={args.workers}, {args.rounds} rounds, medians; {os.cpu_count()} CPUs")
    print()
    print("| model | mode | ready s | CPU s | PSS MB | replaced s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-worker-start-") as work:
        for name in args.models.split(","):
            built = bench_models.MODELS[name](Path(work) / name)
            results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for round_ in range(args.rounds):
                order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    log = Path(work) / f"{name}-{mode}-{round_}.log"
                    results[mode].append(one_server(built.path, args.workers, mode, log))
            for mode, runs in results.items():
                cells = [
                    statistics.median(run[key] for run in runs) for key in ("ready", "cpu", "pss", "replaced")
                ]
                print(
                    f"| {name} | {mode} | {cells[0]:.2f} | {cells[1]:.2f} | {cells[2]:.0f} | {cells[3]:.2f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
