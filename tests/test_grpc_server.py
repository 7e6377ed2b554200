"""``scorer serve`` with SCORER_GRPC_PORT: the gRPC front shares the HTTP server's batcher, takes
its TLS certificate, finishes its calls at a stop, and refuses to start without grpcio or on a port
in use. Real server processes, real sockets, driven by tritonclient.grpc; bounded in rounds and time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from conformance import start_server
from conformance.target import free_port
from tests.conftest import model_calls, plugin_env, wait_for
from tests.test_cli import scorer
from tests.test_tls_http import make_certificate

pytestmark = pytest.mark.slow

triton = pytest.importorskip("tritonclient.grpc")


def _x_input(x: float) -> object:
    tensor = triton.InferInput("x", [1], "FP64")
    tensor.set_data_from_numpy(np.array([x]))
    return tensor


def test_an_http_and_a_grpc_request_with_equal_headers_share_one_model_call(probe_file):
    model = probe_file(
        inputs=[["x", "Float64"], ["city", "Str"]],
        outputs=[["y", "Float64"], ["batch_rows", "Int64"]],
        score_delay=0.3,  # the first call holds the model while the pair queues behind it
    )
    port = free_port()
    env = plugin_env(
        SCORER_GRPC_PORT=str(port), SCORER_BATCH_MAX_WAIT_MS="50", H2O_SCORER_FORWARD_HEADERS="X-Tenant-Id"
    )
    tenant = {"x-tenant-id": "tenant-1"}
    with start_server(model, env=env, record_headers=True) as target, httpx.Client(timeout=60) as http:
        base = target.base_url.rstrip("/")
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")

        def h2o(x: float) -> httpx.Response:
            body = {"fields": ["x", "city"], "rows": [[str(x), "Oslo"]]}
            return http.post(f"{base}/model/score", json=body, headers=tenant)

        def grpc_call(x: float) -> object:
            city = triton.InferInput("city", [1], "BYTES")
            city.set_data_from_numpy(np.array(["Oslo"], dtype=object))
            return client.infer(model.stem, [_x_input(x), city], headers=tenant)

        try:
            shared = False
            for _ in range(4):  # rounds, until the pair was seen sharing a call
                with ThreadPoolExecutor(max_workers=3) as pool:
                    started = model_calls(target)
                    first = pool.submit(h2o, 1.0)
                    # Once the first call has started, the next two wait for the model together.
                    wait_for(lambda n=started: model_calls(target) > n, what="the first model call")
                    pair = pool.submit(h2o, 2.0), pool.submit(grpc_call, 3.0)
                    replies = first.result(), pair[0].result()
                    answer = pair[1].result()
                assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
                assert replies[1].json()["score"][0][0] == "4.0"
                assert answer.as_numpy("y").tolist() == [6.0]
                rows = (int(replies[1].json()["score"][0][1]), int(answer.as_numpy("batch_rows")[0]))
                assert rows[0] == rows[1], f"two requests in one call report different call sizes: {rows}"
                if rows == (2, 2):
                    shared = True
                    break
            assert shared, "the HTTP and the gRPC request never shared a call: the test did not test merging"
        finally:
            client.close()


def test_a_call_in_flight_at_a_stop_is_answered_before_the_server_exits(probe_file):
    port = free_port()
    env = plugin_env(SCORER_GRPC_PORT=str(port), SCORER_SHUTDOWN_GRACE="30")
    model = probe_file(score_delay=2.0)
    with start_server(model, env=env) as target:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                call = pool.submit(client.infer, model.stem, [_x_input(21.0)])
                wait_for(lambda: model_calls(target) >= 1, 60, "the model call")
                assert target.process is not None
                target.process.send_signal(signal.SIGTERM)
                assert call.result(timeout=60).as_numpy("y").tolist() == [42.0]
            assert target.process.wait(timeout=60) == 0, target.server_log()
        finally:
            client.close()


def test_grpc_takes_the_https_certificate(probe_file, tmp_path):
    cert, key = make_certificate(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        **plugin_env(SCORER_TLS_CERT=str(cert), SCORER_TLS_KEY=str(key), SCORER_GRPC_PORT=str(grpc_port)),
    }
    log = tmp_path / "server.log"
    model = probe_file()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scorer_core.cli", "serve", str(model), "--port", str(http_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    secure = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}", ssl=True, root_certificates=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if secure.is_server_ready():
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        result = secure.infer(model.stem, [_x_input(2.0)])
        assert result.as_numpy("y").tolist() == [4.0]
        assert (
            f"Listening for gRPC (Open Inference Protocol) on 127.0.0.1:{grpc_port} with TLS"
            in log.read_text()
        )
        plain = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            with pytest.raises(Exception, match="UNAVAILABLE"):
                plain.is_server_live(client_timeout=10)
        finally:
            plain.close()
    finally:
        secure.close()
        process.terminate()
        process.wait(timeout=30)


def test_without_grpcio_the_start_fails_saying_what_to_install(probe_file):
    blocked = "import sys; sys.modules['grpc'] = None; from scorer_core.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", blocked, "serve", str(probe_file()), "--port", str(free_port())],
        env={**os.environ, **plugin_env(SCORER_GRPC_PORT=str(free_port()))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert (
        "scorer: error: SCORER_GRPC_PORT is set, but gRPC needs packages that are not installed"
        in result.stderr
    )
    assert "pip install 'scorer-core[grpc]'" in result.stderr


def test_a_grpc_port_in_use_or_the_http_port_fails_the_start_naming_the_setting(probe_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = scorer(
            "serve", str(probe_file()), "--port", str(free_port()), env=plugin_env(SCORER_GRPC_PORT=str(port))
        )
    assert result.returncode == 2, result.stderr
    assert (
        f"Port {port} on 127.0.0.1 is already in use; choose another with SCORER_GRPC_PORT" in result.stderr
    )
    http_port = free_port()
    result = scorer(
        "serve", str(probe_file()), "--port", str(http_port), env=plugin_env(SCORER_GRPC_PORT=str(http_port))
    )
    assert result.returncode == 2, result.stderr
    assert "gRPC needs a port of its own" in result.stderr
    result = scorer("serve", str(probe_file()), env=plugin_env(SCORER_GRPC_PORT="70000"))
    assert result.returncode == 2 and "SCORER_GRPC_PORT='70000'" in result.stderr, result.stderr


def test_timeouts_and_sizes_get_their_grpc_status_and_the_server_serves_on(probe_file):
    """504 is DEADLINE_EXCEEDED with REST's message; a call the client gives up on is counted as
    499; a message past SCORER_MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED; then the server serves."""
    from tritonclient.utils import InferenceServerException

    model = probe_file(score_delay=1.5)
    port = free_port()
    env = plugin_env(
        SCORER_GRPC_PORT=str(port), SCORER_REQUEST_TIMEOUT="0.5", SCORER_MAX_REQUEST_BYTES="4096"
    )
    with start_server(model, env=env, record_headers=False) as target:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            with pytest.raises(InferenceServerException) as timed_out:
                client.infer(model.stem, [_x_input(1.0)])
            assert timed_out.value.status() == "StatusCode.DEADLINE_EXCEEDED"
            body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
            rest = target.post(f"/v2/models/{model.stem}/infer", body)
            assert (rest.status, rest.json()) == (504, {"error": timed_out.value.message()})

            with pytest.raises(InferenceServerException) as gave_up:
                client.infer(model.stem, [_x_input(1.0)], client_timeout=0.2)
            assert gave_up.value.status() == "StatusCode.DEADLINE_EXCEEDED"

            large = triton.InferInput("x", [1000], "FP64")  # 8000 bytes of data
            large.set_data_from_numpy(np.zeros(1000))
            with pytest.raises(InferenceServerException) as too_large:
                client.infer(model.stem, [large])
            assert too_large.value.status() == "StatusCode.RESOURCE_EXHAUSTED"

            assert client.is_server_live() and client.is_server_ready()
            wait_for(
                lambda: (
                    'scorer_requests_total{code="499",endpoint="grpc_infer"}' in target.get("/metrics").text
                ),
                30,
                "the abandoned call counted as 499",
            )
            metrics = target.get("/metrics").text
            assert 'scorer_requests_total{code="504",endpoint="grpc_infer"}' in metrics
            assert 'scorer_rejected_requests_total{reason="timeout"}' in metrics
        finally:
            client.close()
