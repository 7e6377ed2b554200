"""Benchmark: what monitoring costs the event loop of one server, toggled between bursts.

``python bench/monitor_loop.py``. One server app (``served_model``, monitoring to files) runs in
this process, driven through ASGI by 64 concurrent single-row requests, with no HTTP and no
load generator. Between bursts the app's monitoring is switched (the data plane's ``scored``
observer, and the front's request ids and arrival times), in alternating order, so that every
mode runs in the same process, on the same heap and the same model, seconds apart:

- ``off``: no monitoring;
- ``front``: each request gets its id (answered in ``X-Request-Id``) and its arrival time, and
  nothing more;
- ``record``: the data plane also makes each request's ``ScoredRequest``, and drops it;
- ``full``: the monitor's observer takes it (encoded, queued, handed to the export process);
- ``off2``: off again, which shows the run's own spread;
- ``neighbour``: off, while an unrelated process works on the other processor (pinned runs only),
  about as busy as the export process is here: what the export process's work can cost the
  server without touching it, on a machine whose two processors share a core or its caches.

It prints, for each mode, the event loop thread's CPU a request (``time.thread_time``) at the
median burst, the median of its differences with ``off`` in the same round, and the median of
the rounds' ratios of throughput, the mode's over ``off``'s. And the observer's own time at
the median request (``perf_counter_ns``, around each call). With ``--pin`` (the default) the
process runs on the second processor and the export process on the first, as
``bench/monitor.py --pin`` runs them.

Why: ``bench/monitor.py`` measures what the issue names (requests/s over HTTP, on and off), but on
this machine its cells move by 0.05 and more between runs of the same code. A part of the cost a
few microseconds wide cannot be seen there; here a round of two bursts of the same process
differs only in monitoring, so a part's cost reads to about 3 us.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as bench_models  # noqa: E402
from run import ours_body  # noqa: E402

CLIENTS = 64
MODES = ("off", "front", "record", "full", "off2", "neighbour")
#: ``neighbour``: monitoring off, while a process that has nothing to do with the server works on
#: the other processor, about as busy as the export process is under this load (a third of it).
NEIGHBOUR = """
import os, time, orjson
os.sched_setaffinity(0, {0})
work = [{"a": i, "b": str(i) * 9, "c": [1.5] * 8} for i in range(2000)]
while True:
    orjson.loads(orjson.dumps(work))
    time.sleep(0.006)
"""


def _exporter_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"scorer_core.monitor.exporter" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Driver:
    """Sends ASGI requests of one body to ``app``, ``CLIENTS`` at a time."""

    def __init__(self, app: Any, body: bytes) -> None:
        self.app = app
        self.body = body
        self.headers = [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        self.failures = 0
        #: The whole process's CPU a request in the last burst (us): every thread of the server.
        self.process_cpu = 0.0

    async def one(self) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.sleep(3600)  # the client stays: a disconnect would cancel the request
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                self.failures += 1

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/model/score", "raw_path": b"/model/score", "query_string": b"",
            "root_path": "", "headers": self.headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080), "state": {},
        }  # fmt: skip
        await self.app(scope, receive, send)

    async def burst(self, requests: int) -> tuple[float, float]:
        """The event loop's CPU a request (us), and the requests/s."""

        async def client(count: int) -> None:
            for _ in range(count):
                await self.one()

        per_client = requests // CLIENTS
        cpu, process, wall = time.thread_time(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(per_client) for _ in range(CLIENTS)))
        done = per_client * CLIENTS
        self.process_cpu = (time.process_time() - process) / done * 1e6
        return (time.thread_time() - cpu) / done * 1e6, done / (time.perf_counter() - wall)


async def measure(model: Path, body: bytes, rounds: int, requests: int, pin: bool) -> list[str]:
    os.environ |= {
        "SCORER_LOG_LEVEL": "warning",
        "SCORER_MODEL_PATH": str(model),
        "SCORER_MONITOR": "file",
        "SCORER_MONITOR_DIR": tempfile.mkdtemp(prefix="scorer-bench-monitor-loop-"),
    }
    from scorer_core.config.settings import load_settings
    from scorer_core.server.served import served_model
    from scorer_core.service import plane as plane_module

    planes: list[Any] = []
    made = plane_module.DataPlane.__init__

    def remember(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        planes.append(self)

    plane_module.DataPlane.__init__ = remember  # type: ignore[method-assign]
    served = served_model(load_settings())
    app = served.app
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                       inbox.get, outbox.put))  # fmt: skip
    await outbox.get()
    while not served.host.ready:
        await asyncio.sleep(0.1)
    plane = planes[-1]
    full = plane._observers
    observer: Callable[[Any], None] = full.scored
    timings: list[int] = []

    def timed(scored: Any) -> None:
        started = time.perf_counter_ns()
        observer(scored)
        timings.append(time.perf_counter_ns() - started)

    dropped: collections.deque[Any] = collections.deque(maxlen=1)
    off = dataclasses.replace(full, scored=None)
    observers = {
        "off": (off, False),
        "off2": (off, False),
        "neighbour": (off, False),
        "front": (off, True),
        "record": (dataclasses.replace(full, scored=dropped.append), True),
        "full": (dataclasses.replace(full, scored=timed), True),
    }

    def switch(mode: str) -> None:
        plane._observers, on = observers[mode]
        app._monitored = app._request_ids = on

    driver = Driver(app, body)
    switch("full")
    await driver.burst(3_000)  # warm, and the export process started
    if pin:
        for pid in _exporter_pids():
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), {0})
    loops: dict[str, list[float]] = {mode: [] for mode in MODES}
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    processes: dict[str, list[float]] = {mode: [] for mode in MODES}
    for index in range(rounds):
        for mode in MODES if index % 2 == 0 else MODES[::-1]:
            switch(mode)
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if mode == "neighbour" else None
            if neighbour is not None:
                await asyncio.sleep(0.3)
            loop, rate = await driver.burst(requests)
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
            processes[mode].append(driver.process_cpu)
            loops[mode].append(loop)
            rates[mode].append(rate)
            await asyncio.sleep(0.15)  # the relay's batch goes out between bursts
    lines = [
        f"{rounds} rounds of {requests} single rows, {CLIENTS} at a time, each mode a burst a round;"
        " loop: the event loop's CPU a request (us) at the median burst, process: every thread's;"
        " added: the median of the round's differences with off; ratio: the median of the rounds'"
        " requests/s over off's",
        "",
        "| mode | loop us a request | added us | process us a request | added us | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        added = statistics.median(a - b for a, b in zip(loops[mode], loops["off"], strict=True))
        process_added = statistics.median(
            a - b for a, b in zip(processes[mode], processes["off"], strict=True)
        )
        ratio = statistics.median(a / b for a, b in zip(rates[mode], rates["off"], strict=True))
        lines.append(
            f"| {mode} | {statistics.median(loops[mode]):.1f} | {added:+.1f} | "
            f"{statistics.median(processes[mode]):.1f} | {process_added:+.1f} | {ratio:.3f} |"
        )
    timings.sort()
    if timings:
        lines += ["", f"the observer's own time (full): median {timings[len(timings) // 2] / 1000:.1f} us, "
                      f"90th percentile {timings[9 * len(timings) // 10] / 1000:.1f} us"]  # fmt: skip
    if driver.failures:
        lines.append(f"{driver.failures} requests were not answered 200")
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await lifespan
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="breast-cancer", choices=sorted(bench_models.MODELS))
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2_500, help="requests a burst")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args = parser.parse_args()
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            parser.error("pinning needs two processors (or --no-pin)")
        os.sched_setaffinity(0, {1})
    import orjson

    work = Path(tempfile.mkdtemp(prefix=f"scorer-bench-monitor-loop-{args.model}-"))
    built = bench_models.MODELS[args.model](work)
    body = orjson.dumps(ours_body(built.frame.iloc[:1]))
    lines = asyncio.run(measure(built.path, body, args.rounds, args.requests, args.pin))
    print(f"model {args.model}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
