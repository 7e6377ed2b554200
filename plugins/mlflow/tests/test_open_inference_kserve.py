"""KServe's own clients score our server: ``InferenceRESTClient`` with ``protocol="v2"`` (binary
tensors and JSON ones, its error path reading our ``{"error": ...}``) and ``InferenceGRPCClient``
on ``SCORER_GRPC_PORT`` (raw contents, NOT_FOUND for a wrong name). The client
runs in a venv of its own (``make peer-kserve``, run by the fixture the first time): kserve pins
pandas 2, and registers the protocol's protobuf messages as tritonclient.grpc does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conformance import start_server
from conformance.target import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
PYTHON = ROOT / "bench" / ".venv-kserve" / "bin" / "python"
NAME = "credit-mixed"  # the mixed_model fixture's directory

#: Sends the columns in argv[4] (a JSON file) to the server at argv[1] (gRPC at argv[2]), the
#: model named argv[3]: over REST once in binary and once in JSON, then over gRPC; prints what
#: came back, and what a request to a wrong name raised.
CLIENT = """
import asyncio, json, sys
import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig, InferRequest, InferInput

url, grpc_address, name, columns = sys.argv[1], sys.argv[2], sys.argv[3], json.load(open(sys.argv[4]))

def inputs(binary):
    found = []
    for column, values in columns.items():
        array = np.array(values, dtype=object if isinstance(values[0], str) else None)
        datatype = {"O": "BYTES", "i": "INT64", "f": "FP64"}[array.dtype.kind]
        tensor = InferInput(column, [len(array)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        found.append(tensor)
    return found

async def main():
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    answers = {}
    for binary in (True, False):
        request = InferRequest(model_name=name, infer_inputs=inputs(binary), request_id="kserve-1")
        response = await client.infer(url, request, model_name=name)
        answers["binary" if binary else "json"] = {
            "id": response.id,
            "model_name": response.model_name,
            "outputs": {o.name: o.as_numpy().tolist() for o in response.outputs},
        }
    answers["ready"] = await client.is_model_ready(url, name)
    try:
        await client.infer(url, InferRequest(model_name="nope", infer_inputs=inputs(False)), model_name="nope")
    except Exception as error:
        answers["wrong_name"] = str(error)
    await client.close()
    remote = InferenceGRPCClient(grpc_address, timeout=30)
    response = await remote.infer(InferRequest(model_name=name, infer_inputs=inputs(True), request_id="kserve-2"))
    answers["grpc"] = {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": {o.name: o.as_numpy().tolist() for o in response.outputs},
    }
    answers["grpc_ready"] = await remote.is_model_ready(name)
    try:
        await remote.infer(InferRequest(model_name="nope", infer_inputs=inputs(True)))
    except grpc.RpcError as error:
        answers["grpc_wrong_name"] = [str(error.code()), error.details()]
    await remote.close()
    print(json.dumps(answers))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def kserve_python():
    subprocess.run(["make", "-s", "peer-kserve"], cwd=ROOT, check=True, timeout=900)
    return PYTHON


def test_kserves_rest_and_grpc_clients_score_as_the_model_does(kserve_python, mixed_model, tmp_path):
    frame = mixed_model.frame
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({name: frame[name].tolist() for name in frame.columns}))
    grpc_port = free_port()
    env = {"SCORER_LOAD_PLUGINS": "mlflow", "SCORER_GRPC_PORT": str(grpc_port)}
    with start_server(mixed_model.path, env=env, record_headers=False) as target:
        run = subprocess.run(
            [str(kserve_python), "-c", CLIENT, target.base_url, f"127.0.0.1:{grpc_port}", NAME, str(columns)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.strip().splitlines()[-1])
    expected = mixed_model.model.predict(frame).tolist()
    for spelling in ("binary", "json"):
        answer = answers[spelling]
        assert answer["id"] == "kserve-1" and answer["model_name"] == NAME, answer
        assert answer["outputs"] == {"prediction": expected}, spelling
    assert answers["ready"] is True
    assert "no model named 'nope' is served here" in answers["wrong_name"], answers["wrong_name"]
    assert "404" in answers["wrong_name"]
    assert answers["grpc"] == {"id": "kserve-2", "model_name": NAME, "outputs": {"prediction": expected}}
    assert answers["grpc_ready"] is True
    code, details = answers["grpc_wrong_name"]
    assert code == "StatusCode.NOT_FOUND" and "no model named 'nope' is served here" in details
