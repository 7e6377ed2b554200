"""SIGTERM under load loses no request on a kept-alive connection.

Over real sockets on loopback; every loop is bounded in count and time. The clients run in their
own process, so that the server's stop is seen as a client sees it.
"""

from __future__ import annotations

import json
import random
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import wait_for
from tests.test_connections_http import closed_within

pytestmark = pytest.mark.slow

BODY = b'{"fields":["x"],"rows":[["1"]]}'
REQUEST = (
    b"POST /model/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)

#: Keep-alive connections that each send a request, read its whole answer and send the next,
#: until the server says ``Connection: close`` or the time is up. A request written that got no
#: complete answer (a reset, or the connection ending) is counted as lost. It prints ``connected``
#: once every connection is open, then its stats at the end.
CLIENTS = """
import asyncio, json, sys, time
host, port, connections, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
request = bytes.fromhex(sys.argv[5])
stats = {"answered": 0, "closed_cleanly": 0, "lost": 0, "kinds": [], "unfinished": 0}

async def connection(reader, writer):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\\r\\n")[1:] if line)
            await reader.readexactly(int(fields[b"content-length"]))
        except (asyncio.IncompleteReadError, OSError) as exc:
            stats["lost"] += 1
            stats["kinds"].append(type(exc).__name__)
            return
        assert head.startswith(b"HTTP/1.1 200"), head
        stats["answered"] += 1
        if fields.get(b"connection") == b"close":
            stats["closed_cleanly"] += 1
            writer.close()
            return
    stats["unfinished"] += 1

async def main():
    opened = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(connections)))
    print("connected", flush=True)
    await asyncio.gather(*(connection(reader, writer) for reader, writer in opened))

asyncio.run(main())
print(json.dumps(stats))
"""


def _address(target) -> tuple[str, int]:
    host, port = target.base_url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigterm_under_keep_alive_load_loses_no_request_in_ten_runs(probe_server, workers):
    connections, runs = 32, 10
    for run in range(runs):
        with probe_server(env={"BATCH_WORKERS": workers}, record_headers=False) as target:
            host, port = _address(target)
            clients = subprocess.Popen(
                [sys.executable, "-c", CLIENTS, host, str(port), str(connections), "30", REQUEST.hex()],
                stdout=subprocess.PIPE,
                text=True,
            )
            # On a loaded machine the clients' interpreter can take longer to start than the
            # stop below waits: their connections would be refused, and nothing tested.
            assert select.select([clients.stdout], [], [], 60)[0], "the clients never connected"
            assert clients.stdout.readline() == "connected\n"
            time.sleep(random.uniform(0.5, 1.0))
            target.process.send_signal(signal.SIGTERM)
            assert target.process.wait(timeout=30) == 0
            out, _ = clients.communicate(timeout=30)
            stats = json.loads(out)
            assert stats["lost"] == 0, f"run {run}: {stats}"
            assert stats["closed_cleanly"] == connections, f"run {run}: {stats}"
            assert stats["answered"] > connections, f"run {run}: too little load to test anything: {stats}"


def refuses_connections(target) -> bool:
    try:
        socket.create_connection(_address(target), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection ended before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


def test_a_request_on_an_idle_connection_just_after_sigterm_is_answered_with_connection_close(probe_server):
    with probe_server(record_headers=False) as target:
        busy = socket.create_connection(_address(target))
        idle = socket.create_connection(_address(target))
        for sock in (busy, idle):
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
        target.process.send_signal(signal.SIGTERM)
        # The stop has begun once the listener is closed: uvicorn then, at once, tells every
        # open connection to drain.
        wait_for(lambda: refuses_connections(target), 15, "the listener closing at SIGTERM")
        # uvicorn alone closed both at once: this request met a reset.
        busy.sendall(REQUEST)
        head = _answer(busy)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
        assert busy.recv(1) == b"", "closed after the answer"
        # The connection that sends nothing gets the server's FIN (a clean end, not a reset).
        started = time.monotonic()
        idle.settimeout(10)
        assert idle.recv(1) == b""
        assert time.monotonic() - started < 5
        idle.close()
        busy.close()
        assert target.process.wait(timeout=30) == 0


def test_a_partial_request_head_does_not_hold_sigterm(probe_server):
    # A header timeout far beyond the drain, so that only the stop can explain the close.
    with probe_server(env={"SCORER_HEADER_TIMEOUT": "120"}, record_headers=False) as target:
        partial = socket.create_connection(_address(target))
        try:
            partial.sendall(b"POST /model/score HTTP/1.1\r\n")
            time.sleep(0.2)
            partial.sendall(b"Host: t\r\nContent-Type: application/json\r\n")  # and never the end
            time.sleep(0.2)
            target.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert closed_within(partial, 15), "the partial request's connection was held"
            partial.close()  # as a client does at the server's FIN
            assert target.process.wait(timeout=15) == 0
            took = time.monotonic() - started
        finally:
            partial.close()
    assert took < 5, f"the stop took {took:.1f} s (SCORER_SHUTDOWN_GRACE is 30 s)"
