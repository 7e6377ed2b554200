"""Requests of both protocols share the batcher: an H2O request and an Open Inference Protocol one
that wait together, with the same forwarded headers, are scored in one model call. Real server,
real sockets; bounded in rounds and time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conformance import start_server
from tests.conftest import model_calls, plugin_env, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", ["0", "1"])
def test_an_h2o_and_an_oip_request_waiting_together_share_one_model_call(probe_file, workers):
    model = probe_file(
        inputs=[["x", "Float64"], ["city", "Str"]],
        outputs=[["y", "Float64"], ["batch_rows", "Int64"]],
        score_delay=0.3,  # the first call holds the model while the pair queues behind it
    )
    env = plugin_env(BATCH_WORKERS=workers, SCORER_BATCH_MAX_WAIT_MS="50")
    name = model.stem
    with start_server(model, env=env, record_headers=True) as target, httpx.Client(timeout=60) as client:
        base = target.base_url.rstrip("/")

        def h2o(x: float) -> httpx.Response:
            return client.post(f"{base}/model/score", json={"fields": ["x", "city"], "rows": [[str(x), "Oslo"]]})

        def oip(x: float) -> httpx.Response:
            body = {
                "inputs": [
                    {"name": "x", "datatype": "FP64", "shape": [1], "data": [x]},
                    {"name": "city", "datatype": "BYTES", "shape": [1], "data": ["Oslo"]},
                ]
            }
            return client.post(f"{base}/v2/models/{name}/infer", json=body)

        shared = False
        for _ in range(4):  # rounds, until the pair was seen sharing a call
            with ThreadPoolExecutor(max_workers=3) as pool:
                started = model_calls(target)
                first = pool.submit(h2o, 1.0)
                # Once the first call has started, the next two wait for the model together.
                wait_for(lambda n=started: model_calls(target) > n, what="the first model call")
                pair = [pool.submit(h2o, 2.0), pool.submit(oip, 3.0)]
                replies = [first.result(), *(f.result() for f in pair)]
            assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
            assert replies[1].json()["score"][0][0] == "4.0"
            outputs = {o["name"]: o["data"] for o in replies[2].json()["outputs"]}
            assert outputs["y"] == [6.0]
            rows = (int(replies[1].json()["score"][0][1]), outputs["batch_rows"][0])
            assert rows[0] == rows[1], f"two requests in one call report different call sizes: {rows}"
            if rows == (2, 2):
                shared = True
                break
        assert shared, "the H2O and the OIP request never shared a call: the test did not test merging"
