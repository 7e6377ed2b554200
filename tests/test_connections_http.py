"""Connections that never become requests: silent sockets, dribbled headers, too many sockets.

Over real sockets on loopback; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import plugin_env
from tests.test_bodies_http import ROW, connect, headers, read_all, read_response, request_bytes

pytestmark = pytest.mark.slow


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server ends the connection (FIN or reset) within ``seconds``, discarding
    anything it sends first."""
    deadline = time.monotonic() + seconds
    readable = select.poll()  # not select(), which takes no descriptor past 1,023
    readable.register(sock, select.POLLIN)
    while readable.poll(max(0.0, deadline - time.monotonic()) * 1000):
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def line_ends_until_closed(sock: socket.socket) -> float:
    """Send a bare line end every 0.3 s (bytes that start no request) until the server closes the
    connection, at most 20 times; the seconds that took."""
    started = time.monotonic()
    for _ in range(20):
        sock.sendall(b"\r\n")
        if closed_within(sock, 0.3):
            break
    return time.monotonic() - started


def test_silent_connections_are_closed_after_the_idle_timeout(probe_server):
    with probe_server(env={"SCORER_IDLE_TIMEOUT": "1"}, record_headers=False) as target:
        silent = [connect(target) for _ in range(50)]
        dribbling = connect(target)
        started = time.monotonic()
        try:
            dribbled = line_ends_until_closed(dribbling)
            assert all(closed_within(sock, 10) for sock in silent), "a silent connection was held"
            waited = time.monotonic() - started
            assert target.get("/healthz").status == 200
        finally:
            for sock in (*silent, dribbling):
                sock.close()
    assert 0.8 < dribbled < 4, f"line ends kept the connection open {dribbled:.1f} s"
    assert 0.8 < waited < 10, f"closed after {waited:.1f} s, not at the 1 s idle timeout"


def test_a_kept_alive_connection_sending_line_ends_is_closed_after_the_keepalive_timeout(probe_server):
    with probe_server(env={"SCORER_KEEPALIVE_TIMEOUT": "1"}, record_headers=False) as target:
        sock = connect(target)
        try:
            sock.sendall(request_bytes())
            assert read_response(sock, timeout=10).startswith(b"HTTP/1.1 200 ")
            # uvicorn stopped its keep-alive timer at the first byte, and started none again.
            dribbled = line_ends_until_closed(sock)
        finally:
            sock.close()
    assert 0.8 < dribbled < 4, f"line ends kept the connection open {dribbled:.1f} s"


def test_a_kept_alive_connection_is_closed_at_the_keepalive_timeout_not_the_idle_one(probe_server):
    env = {"SCORER_IDLE_TIMEOUT": "60", "SCORER_KEEPALIVE_TIMEOUT": "1"}
    with probe_server(env=env, record_headers=False) as target:
        sock = connect(target)
        try:
            sock.sendall(request_bytes())
            assert read_response(sock, timeout=10).startswith(b"HTTP/1.1 200 ")
            answered = time.monotonic()
            closed = closed_within(sock, 20)
            waited = time.monotonic() - answered
        finally:
            sock.close()
    assert closed, "a kept-alive connection outlived SCORER_KEEPALIVE_TIMEOUT=1 by 20 s"
    assert 0.8 < waited < 10, f"closed {waited:.1f} s after the answer, not at the 1 s keep-alive timeout"


def test_a_kept_alive_connection_outlives_the_idle_timeout_which_bounds_first_requests_only(probe_server):
    # A proxy keeps connections open past SCORER_IDLE_TIMEOUT; closing them then is its 502.
    env = {"SCORER_IDLE_TIMEOUT": "1", "SCORER_KEEPALIVE_TIMEOUT": "60"}
    with probe_server(env=env, record_headers=False) as target:
        kept = connect(target)
        try:
            kept.sendall(request_bytes())
            assert read_response(kept, timeout=10).startswith(b"HTTP/1.1 200 ")
            silent = connect(target)
            try:
                assert closed_within(silent, 10), "a connection with no first request outlived the idle timeout"
            finally:
                silent.close()
            assert not closed_within(kept, 1), "a kept-alive connection was closed at the idle timeout"
            kept.sendall(request_bytes())
            assert read_response(kept, timeout=10).startswith(b"HTTP/1.1 200 ")
        finally:
            kept.close()


def test_headers_dribbled_at_one_byte_a_second_are_cut_off_at_the_header_timeout(probe_server):
    with probe_server(env={"SCORER_HEADER_TIMEOUT": "2"}, record_headers=False) as target:
        sock = connect(target)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            started = time.monotonic()
            for _ in range(12):
                if select.select([sock], [], [], 1.0)[0]:
                    break
                sock.sendall(b"a")
            answer = read_all(sock, timeout=5)
            took = time.monotonic() - started
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"SCORER_HEADER_TIMEOUT" in answer and b"connection: close" in answer.lower()
        assert 1.5 < took < 8, f"cut off after {took:.1f} s, not at the 2 s header timeout"
        assert target.get("/healthz").status == 200


def test_a_request_whose_head_arrives_in_pieces_within_the_timeout_is_answered(probe_server):
    with probe_server(env={"SCORER_HEADER_TIMEOUT": "5"}, record_headers=False) as target:
        sock = connect(target)
        try:
            whole = request_bytes(b"Connection: close\r\n")
            for piece in (whole[:20], whole[20:60], whole[60:]):
                sock.sendall(piece)
                time.sleep(0.3)
            answer = read_all(sock, timeout=10)
        finally:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def _open_file_limit(tmp_path: Path, soft: int, hard: int) -> dict[str, str]:
    """Server environment whose process starts with this RLIMIT_NOFILE, as a container's would:
    set by a ``sitecustomize`` module before anything of the server runs."""
    (tmp_path / "sitecustomize.py").write_text(
        f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
    )
    return {"PYTHONPATH": os.pathsep.join((str(tmp_path), plugin_env()["PYTHONPATH"]))}


def _limits_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


def test_the_soft_open_file_limit_is_raised_to_the_hard_one_at_start(probe_server, tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard open-file limit here is {hard}: nothing to raise 1,024 to")
    with probe_server(env=_open_file_limit(tmp_path, 1024, hard), record_headers=False) as target:
        assert _limits_of(target.process.pid) == (hard, hard)
        assert f"from 1024 to {hard}" in target.server_log()


def test_1100_silent_sockets_leave_the_probes_reachable_at_a_1024_file_limit(probe_server, tmp_path):
    # The hard limit is 1,024 too, as in some containers: raising the soft one cannot help.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        if hard != resource.RLIM_INFINITY and hard < 1400:
            pytest.skip(f"this test process needs 1,400 open files; its hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1400, hard))
    env = {**_open_file_limit(tmp_path, 1024, 1024), "SCORER_IDLE_TIMEOUT": "120"}
    with probe_server(env=env, record_headers=False) as target:
        pid = target.process.pid
        silent: list[socket.socket] = []
        try:
            started = time.monotonic()
            while len(silent) < 1100 and time.monotonic() - started < 60:
                silent.append(connect(target))
            assert len(silent) == 1100
            for path in ("/healthz", "/readyz", "/healthz"):
                assert target.get(path, timeout=5).status == 200, path
            score = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}, timeout=5)
            assert score.status == 200, score.text
            assert len(os.listdir(f"/proc/{pid}/fd")) < 1024
            shed = sum(closed_within(sock, 0) for sock in silent)
        finally:
            for sock in silent:
                sock.close()
        assert shed >= 100, f"only {shed} of 1,100 silent sockets were closed"
        assert "longest idle" in target.server_log()


def test_past_the_cap_with_every_connection_busy_a_new_one_is_answered_for_the_probes_only(probe_server):
    env = {"SCORER_MAX_CONNECTIONS": "4", "SCORER_BODY_TIMEOUT": "60"}
    stalled = headers(length=len(ROW))  # a request whose body never comes: busy, never idle
    metrics = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
    with probe_server(env=env, record_headers=False) as target:
        busy = [connect(target) for _ in range(3)]
        watcher = connect(target)
        try:
            for sock in busy:
                sock.sendall(stalled)
            deadline = time.monotonic() + 10
            while True:
                watcher.sendall(metrics)
                if b"\nscorer_in_flight_requests 3.0" in read_response(watcher, timeout=10):
                    break
                assert time.monotonic() < deadline, "the stalled requests never reached the app"
            # One packet: once its first request is answered, the stalled one after it was parsed.
            watcher.sendall(metrics + stalled)
            assert read_response(watcher, timeout=10).startswith(b"HTTP/1.1 200 ")
            refused = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}, timeout=5)
            assert refused.status == 503, refused
            assert refused.headers["retry-after"] == "1" and "SCORER_MAX_CONNECTIONS=4" in refused.text
            assert target.get("/healthz", timeout=5).status == 200
            assert target.get("/readyz", timeout=5).status == 200
        finally:
            for sock in (*busy, watcher):
                sock.close()
        deadline = time.monotonic() + 10
        while target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}, timeout=5).status != 200:
            assert time.monotonic() < deadline, "scoring did not come back once the connections closed"
            time.sleep(0.1)


def _data_segments_received(sock: socket.socket) -> int:
    """The TCP segments with data that ``sock`` has received (Linux's ``tcpi_data_segs_in``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


#: Where ``struct tcp_info`` holds ``tcpi_data_segs_in`` (Linux 4.6 and later).
_DATA_SEGS_IN = 152


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's TCP_INFO")
def test_each_answer_leaves_in_one_tcp_segment(probe_server):
    # uvicorn writes a head and then a body: two segments an answer, which the server now joins.
    asks = [
        (request_bytes(), b"HTTP/1.1 200 "),
        (request_bytes(body=b'{"fields": ["x"], "rows": [["2"]'), b"HTTP/1.1 400 "),
        (b"GET /model/schema HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 200 "),
        (b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 404 "),
    ]
    with probe_server(record_headers=False) as target:
        sock = connect(target)
        try:
            before = _data_segments_received(sock)
            for _ in range(5):
                for ask, status in asks:
                    sock.sendall(ask)
                    answer = read_response(sock, timeout=10)
                    assert answer.startswith(status), answer[:200]
            received = _data_segments_received(sock) - before
        finally:
            sock.close()
    assert received == 5 * len(asks), f"{received} segments for {5 * len(asks)} answers"


def test_answers_without_a_body_write_and_after_100_continue_still_arrive(probe_server):
    with probe_server(record_headers=False) as target:
        sock = connect(target)
        try:
            sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 ")
            sock.sendall(request_bytes(b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
            assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(ROW)
            assert read_response(sock, timeout=10).startswith(b"HTTP/1.1 200 ")
            sock.sendall(request_bytes() * 3)  # pipelined: three answers, in order
            answers = b""
            while answers.count(b"HTTP/1.1 200 ") < 3:
                chunk = sock.recv(65536)
                assert chunk, answers
                answers += chunk
            assert answers.count(b'"score"') == 3, answers
        finally:
            sock.close()


@contextlib.contextmanager
def _in_process_server(app):
    """``app`` behind this server's guarded protocol, on uvicorn and uvloop (as the server runs)
    in a thread of this process, where the collector and the app's own state can be looked at;
    its address."""
    import threading

    import uvicorn
    import uvloop

    from scorer_core.server.connections import ConnectionLimits, guarded_protocol

    limits = ConnectionLimits(
        max_header_bytes=65536, header_timeout=10, idle_timeout=10, keepalive_timeout=10, max_connections=100
    )
    config = uvicorn.Config(
        app, http=guarded_protocol(limits), log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: uvloop.run(server.serve(sockets=[listener])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the in-process server did not start"
            time.sleep(0.01)
        yield listener.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_answered_requests_leave_no_reference_cycles_behind():
    """Every request's objects are freed as soon as it is answered, by reference counting: a
    reference cycle per request (a wrapper kept on uvicorn's cycle that held the cycle, once)
    made the garbage collector walk the young objects every 200 requests, 8 us a request."""
    import gc

    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    asks = [
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ]
    with _in_process_server(app) as address:
        sock = socket.create_connection(address, timeout=10)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(25):
                for ask in asks:
                    sock.sendall(ask)
                    assert read_response(sock, timeout=10).endswith(b"\r\n\r\nok")
            sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:  # a head only: its answer has no body
                head += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 ")
            sock.close()
            gc.collect()
            kept = [o for o in gc.garbage if isinstance(o, RequestResponseCycle)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert kept == [], f"{len(kept)} of 51 requests' cycles were freed only by the garbage collector"


def test_a_held_head_is_not_written_once_the_client_has_gone():
    """An app that sends its head, waits, and sends its body after the client left: the head,
    held for the body, is dropped as uvicorn drops the body, and the app's send does not fail."""
    outcomes: list[str] = []
    headed = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        headed.set()
        outcomes.append((await receive())["type"])  # uvicorn's word that the client has gone
        try:
            await send({"type": "http.response.body", "body": b"ok"})
            outcomes.append("sent")
        except Exception as exc:
            outcomes.append(repr(exc))

    with _in_process_server(app) as address:
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
        assert headed.wait(10), "the app never sent its head"
        sock.close()
        deadline = time.monotonic() + 10
        while len(outcomes) < 2:
            assert time.monotonic() < deadline, "the app never finished"
            time.sleep(0.02)
    assert outcomes == ["http.disconnect", "sent"]
