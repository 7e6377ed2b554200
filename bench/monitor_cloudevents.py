"""CPU cost of the ``cloudevents`` monitoring sink, per event pair (two posts), in its own thread.

``python bench/monitor_cloudevents.py [--events 20000] [--rows 1]``: a minimal HTTP/1.1 receiver
answers 200 in a child process (so its work is not counted), and this process sends single-row
events (the issue's load) through ``CloudEventsSink`` in batches of 256, as an outbox does. It
prints the sending thread's CPU time per pair (``time.thread_time``: what the sink takes from the
scoring server's GIL), split into building the two posts and posting them, and the wall time, over
plain HTTP and over HTTPS (one TLS handshake, then the kept connection).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scorer_core.monitor.cloudevents import CloudEventsSink

BATCH = 256


def receive(port: int, cert: str | None, key: str | None) -> None:
    """The receiver: reads each request's headers and body, answers 200 with no body."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        context = None
        if cert and key:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=context)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def event(i: int, rows: int) -> dict[str, Any]:
    """An event as ``EventShaper`` makes one for a request of the benchmark models' shape."""
    received = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
    return {
        "id": f"{i:016x}",
        "part": 1,
        "parts": 1,
        "received": received,
        "duration_ms": 1.234,
        "model": {"id": "3f2a9c", "name": "breast-cancer", "version": "3f2a9c", "runtime": "mlflow"},
        "deployment": None,
        "endpoint": "score",
        "status": 200,
        "error": None,
        "headers": {"x-tenant": "acme"},
        "request": {"fields": [f"f{c}" for c in range(30)], "rows": [[0.5 + c for c in range(30)]] * rows},
        "response": {"fields": ["label", "p0", "p1"], "rows": [["1", 0.25, 0.75]] * rows},
    }


def run(url: str, count: int, rows: int, context: ssl.SSLContext | None) -> dict[str, float]:
    sink = CloudEventsSink(url, host_name="bench", context=context)
    events = [event(i, rows) for i in range(count)]
    build = time.thread_time()
    for one in events:
        sink._pair(one)  # the part of send that is not the socket's
    build = time.thread_time() - build
    sink.send(events[:BATCH], timeout=30)  # connected (and TLS handshaken) before timing
    cpu, wall = time.thread_time(), time.perf_counter()
    for start in range(0, count, BATCH):
        sink.send(events[start : start + BATCH], timeout=30)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    sink.close(1)
    return {"cpu_us": cpu / count * 1e6, "build_us": build / count * 1e6, "wall_us": wall / count * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive is not None:
        receive(args.receive, args.cert, args.key)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conformance.target import free_port
    from tests.test_tls_http import make_certificate

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_certificate(Path(tmp))
        for scheme in ("http", "https"):
            port = free_port()
            command = [sys.executable, __file__, "--receive", str(port)]
            if scheme == "https":
                command += ["--cert", str(cert), "--key", str(key)]
            child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            try:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
                context = ssl.create_default_context(cafile=str(cert)) if scheme == "https" else None
                figures = run(f"{scheme}://127.0.0.1:{port}/", args.events, args.rows, context)
            finally:
                child.terminate()
                child.wait(10)
            print(
                f"{scheme:5} {args.events} pairs of {args.rows}-row events: "
                f"{figures['cpu_us']:.0f} us CPU per pair in the sending thread "
                f"({figures['build_us']:.0f} us building the two posts), {figures['wall_us']:.0f} us wall"
            )


if __name__ == "__main__":
    main()
