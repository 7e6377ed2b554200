"""KServe's own Python clients, driven from their own venv (``make peer-kserve``): kserve pins
pandas 2, and registers the Open Inference Protocol's protobuf messages globally, as
tritonclient.grpc does, so neither can share this interpreter. Plugins' tests use it too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
PYTHON = ROOT / "bench" / ".venv-kserve" / "bin" / "python"

#: argv: the HTTP base URL, the gRPC address, the model's name, a JSON file of columns (each
#: ``[datatype, values]``; NaN as null). Sends them over REST once in binary and once in JSON, then
#: over gRPC; prints what came back, and what a request to a wrong name raised on each.
CLIENT = """
import asyncio, json, sys
import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig, InferRequest, InferInput

url, grpc_address, name, columns = sys.argv[1], sys.argv[2], sys.argv[3], json.load(open(sys.argv[4]))
NUMPY = {"BYTES": object, "FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": bool}

def inputs(binary):
    found = []
    for column, (datatype, values) in columns.items():
        if datatype != "BYTES":
            values = [np.nan if v is None else v for v in values]
        array = np.array(values, dtype=NUMPY[datatype])
        tensor = InferInput(column, [len(array)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        found.append(tensor)
    return found

def described(response):
    outputs = {}
    for o in response.outputs:
        values = o.as_numpy().tolist()
        outputs[o.name] = [v.decode() if isinstance(v, bytes) else v for v in values]
    return {"id": response.id, "model_name": response.model_name, "outputs": outputs}

async def main():
    answers = {}
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    for binary in (True, False):
        request = InferRequest(model_name=name, infer_inputs=inputs(binary), request_id="kserve-1")
        answers["binary" if binary else "json"] = described(await client.infer(url, request, model_name=name))
    answers["ready"] = await client.is_model_ready(url, name)
    try:
        await client.infer(url, InferRequest(model_name="nope", infer_inputs=inputs(False)), model_name="nope")
    except Exception as error:
        answers["wrong_name"] = str(error)
    await client.close()
    remote = InferenceGRPCClient(grpc_address, timeout=30)
    request = InferRequest(model_name=name, infer_inputs=inputs(True), request_id="kserve-2")
    answers["grpc"] = described(await remote.infer(request))
    answers["grpc_ready"] = await remote.is_model_ready(name)
    try:
        await remote.infer(InferRequest(model_name="nope", infer_inputs=inputs(True)))
    except grpc.RpcError as error:
        answers["grpc_wrong_name"] = [str(error.code()), error.details()]
    await remote.close()
    print(json.dumps(answers))

asyncio.run(main())
"""


def ensure_kserve() -> Path:
    """The peer venv's python, built the first time (``make peer-kserve``)."""
    subprocess.run(["make", "-s", "peer-kserve"], cwd=ROOT, check=True, timeout=900)
    return PYTHON


def kserve_answers(
    base_url: str, grpc_address: str, name: str, columns: dict[str, tuple[str, list[Any]]], work: Path
) -> dict[str, Any]:
    """What KServe's REST client (binary, then JSON) and gRPC client got for ``columns``."""
    source = work / "kserve-columns.json"
    source.write_text(json.dumps(columns))
    run = subprocess.run(
        [str(ensure_kserve()), "-c", CLIENT, base_url, grpc_address, name, str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def check_refusals(answers: dict[str, Any]) -> None:
    """A wrong model name: our text over REST (with the 404) and NOT_FOUND over gRPC."""
    assert "no model named 'nope' is served here" in answers["wrong_name"], answers["wrong_name"]
    assert "404" in answers["wrong_name"]
    code, details = answers["grpc_wrong_name"]
    assert code == "StatusCode.NOT_FOUND" and "no model named 'nope' is served here" in details
    assert answers["ready"] is True and answers["grpc_ready"] is True
