"""Slow and large bodies over real sockets: they never hold a scoring slot, and never fill memory.

Loops are bounded in count and time, and every connection is to loopback.
"""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlparse

import pytest

from tests.conftest import wait_for
from tests.test_metrics_http import scrape, value

pytestmark = pytest.mark.slow

ROW = b'{"fields": ["x"], "rows": [["2"]]}'


def in_flight(target) -> float:
    """Scoring requests the server holds now, their bodies still being read included."""
    return value(scrape(target), "scorer_in_flight_requests")


def connect(target) -> socket.socket:
    url = urlparse(target.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    return sock


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def headers(length: int | None = None, chunked: bool = False) -> bytes:
    lines = [b"POST /model/score HTTP/1.1", b"Host: test", b"Content-Type: application/json"]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    else:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """One whole answer: its head, then as many body bytes as its Content-Length says (the body
    may come in a later segment than the head)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout

    def complete() -> bool:
        head, found, body = data.partition(b"\r\n\r\n")
        if not found:
            return False
        lines = [line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:]]
        length = next((int(value) for name, value in lines if name == b"content-length"), 0)
        return len(body) >= length

    while not complete() and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_stalled_bodies_hold_no_scoring_slot_and_get_408(probe_server):
    env = {"SCORING_CONCURRENCY": "4", "SCORER_QUEUE_SIZE": "0", "SCORER_BODY_TIMEOUT": "2"}
    with probe_server(env=env, record_headers=False) as target:
        stalled = []
        try:
            for _ in range(96):  # far more than the 4 scoring slots
                sock = connect(target)
                sock.sendall(headers(length=len(ROW)) + ROW[:10])  # then nothing more
                stalled.append(sock)
            wait_for(lambda: in_flight(target) == 96, 30, "all 96 stalled bodies being read")
            started = time.monotonic()
            reply = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}, timeout=5)
            assert reply.status == 200, reply.text
            assert time.monotonic() - started < 1.0
            answers = [read_response(sock, timeout=10) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
    assert all(b"connection: close" in a.lower() for a in answers)
    assert b"SCORER_BODY_TIMEOUT" in answers[0]


def test_a_chunked_body_past_the_limit_is_refused_while_it_streams(probe_server):
    limit = 1024 * 1024
    with probe_server(env={"SCORER_MAX_REQUEST_BYTES": str(limit)}, record_headers=False) as target:
        sock = connect(target)
        try:
            sock.sendall(headers(chunked=True))
            chunk = b"x" * 65536
            sent = 0
            answer = b""
            while sent < 64 * limit:  # a 64 MiB upload, unless the server answers first
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    answer = read_response(sock, timeout=5)
                    break
            if not answer:
                answer = read_response(sock, timeout=5)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert sent < 8 * limit, f"the server read {sent} bytes before refusing"
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).status == 200


def test_a_declared_length_over_the_limit_is_refused_before_the_body(probe_server):
    with probe_server(env={"SCORER_MAX_REQUEST_BYTES": "2048"}, record_headers=False) as target:
        sock = connect(target)
        try:
            sock.sendall(headers(length=10**9))
            answer = read_response(sock, timeout=5)
        finally:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower()


def request_bytes(extra_headers: bytes = b"", body: bytes = ROW) -> bytes:
    return (
        b"POST /model/score HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + extra_headers
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection or ``timeout`` passes."""
    sock.settimeout(0.5)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def test_headers_over_the_cap_get_431_without_being_buffered(probe_server):
    with probe_server(env={"SCORER_MAX_HEADER_BYTES": "16384"}, record_headers=False) as target:
        rss_before = rss_kib(target.process.pid)
        sock = connect(target)
        try:
            sock.sendall(b"POST /model/score HTTP/1.1\r\nHost: test\r\nX-Big: ")
            sent, answer = 0, b""
            while sent < 64 * 1024 * 1024:  # a 64 MiB header value, unless the server answers first
                try:
                    sock.sendall(b"a" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 65536
                if select.select([sock], [], [], 0)[0]:
                    break
            answer = read_all(sock, timeout=5)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert b"SCORER_MAX_HEADER_BYTES" in answer
        assert sent < 16 * 1024 * 1024, "answered long before the 64 MiB header was complete"
        assert rss_kib(target.process.pid) - rss_before < 16 * 1024, "the header was not buffered"
        ok = connect(target)
        try:
            ok.sendall(request_bytes(b"Authorization: Bearer " + b"t" * 8000 + b"\r\nConnection: close\r\n"))
            assert read_all(ok, timeout=10).startswith(b"HTTP/1.1 200 ")
        finally:
            ok.close()


def test_a_valid_request_pipelined_before_a_malformed_one_is_answered(probe_server):
    with probe_server(record_headers=False, score_delay=0.3) as target:
        sock = connect(target)
        try:
            sock.sendall(request_bytes() + b"GARBAGE / NOT-HTTP\r\n\r\n")
            answer = read_all(sock, timeout=10)
        finally:
            sock.close()
    first, _, rest = answer.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 ") and b'"score":[["4.0"]]' in first, answer[:300]
    assert b"Invalid HTTP request" in rest


def test_two_valid_pipelined_requests_then_a_malformed_one_are_all_answered_in_order(probe_server):
    with probe_server(record_headers=False, score_delay=0.2) as target:
        sock = connect(target)
        try:
            sock.sendall(
                request_bytes() + request_bytes(body=b'{"fields":["x"],"rows":[["5"]]}') + b"\x00\x01\r\n\r\n"
            )
            answer = read_all(sock, timeout=10)
        finally:
            sock.close()
    assert answer.count(b"HTTP/1.1 200 ") == 2 and answer.count(b"HTTP/1.1 400 ") == 1
    assert answer.index(b'[["4.0"]]') < answer.index(b'[["10.0"]]') < answer.index(b"HTTP/1.1 400 ")


def test_a_client_that_disconnects_mid_body_is_counted_as_a_disconnect_not_a_500(probe_server):
    with probe_server(record_headers=False) as target:
        gone = [connect(target) for _ in range(3)]
        for sock in gone:
            sock.sendall(headers(length=1000) + ROW[:10])
        wait_for(lambda: in_flight(target) == 3, 30, "the three bodies being read")
        for sock in gone:
            sock.close()
        deadline = time.monotonic() + 10
        samples = scrape(target)
        while value(samples, "scorer_rejected_requests_total", reason="client_disconnect") < 3:
            assert time.monotonic() < deadline, "the disconnects were not counted as such"
            time.sleep(0.2)
            samples = scrape(target)
        assert value(samples, "scorer_requests_total", endpoint="score", code="499") == 3
        assert value(samples, "scorer_requests_total", endpoint="score", code="500") == 0
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).status == 200
        log = target.server_log()
    assert "ERROR" not in log and "Traceback" not in log, log[-2000:]


MALFORMED_CHUNKED = {
    "a size not in hex": b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + ROW + b"\r\n0\r\n\r\n",
    "a size that overflows": b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n" + ROW + b"\r\n",
    "xchunked": b"Transfer-Encoding: xchunked\r\n\r\n%x\r\n" % len(ROW) + ROW + b"\r\n0\r\n\r\n",
    "no CRLF after data": b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(ROW) + ROW + b"XX0\r\n\r\n",
}


def test_malformed_chunked_bodies_get_400_at_once(probe_server):
    env = {"SCORER_BODY_TIMEOUT": "30"}  # far beyond the wait: only the framing can explain an answer
    with probe_server(env=env, record_headers=False) as target:
        for case, framing in MALFORMED_CHUNKED.items():
            sock = connect(target)
            try:
                started = time.monotonic()
                sock.sendall(
                    b"POST /model/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + framing
                )
                answer = read_all(sock, timeout=10)
                took = time.monotonic() - started
            finally:
                sock.close()
            assert answer.startswith(b"HTTP/1.1 400 "), (case, answer[:300])
            assert b"chunked" in answer and b"connection: close" in answer.lower(), (case, answer)
            assert took < 3, f"{case}: answered after {took:.1f} s"
        assert value(scrape(target), "scorer_requests_total", endpoint="score", code="400") == len(
            MALFORMED_CHUNKED
        )
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).status == 200


def test_a_head_whose_end_is_split_across_two_reads_is_not_taken_for_a_huge_one(probe_server):
    """'\\r\\n\\r' at the end of one read and '\\n' plus a large body in the next: the body is not
    header bytes (it was counted as such, and a valid request got 431)."""
    rows = b", ".join([b'["1.5"]'] * 20_000)  # about 180 KiB of body, past the 16 KiB header cap
    body = b'{"fields": ["x"], "rows": [' + rows + b"]}"
    with probe_server(env={"SCORER_MAX_HEADER_BYTES": "16384"}, record_headers=False) as target:
        head = request_bytes(b"Connection: close\r\n", body)[: -len(body)]
        assert head.endswith(b"\r\n\r\n")
        for split in (1, 2, 3):  # the four-byte end cut after its first, second or third byte
            sock = connect(target)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.sendall(head[: len(head) - 4 + split])
                time.sleep(0.2)  # let the server read the first part on its own
                sock.sendall(head[len(head) - 4 + split :] + body)
                answer = read_all(sock, timeout=30)
            finally:
                sock.close()
            assert answer.startswith(b"HTTP/1.1 200 "), (split, answer[:200])
