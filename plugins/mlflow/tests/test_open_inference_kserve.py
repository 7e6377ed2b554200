"""KServe's own REST client (``kserve.InferenceRESTClient`` with ``protocol="v2"``) scores our
server: binary tensors and JSON ones, and its error path reads our ``{"error": ...}``. The client
runs in a venv of its own (``make peer-kserve``, run by the fixture the first time): kserve pins
pandas 2, and registers the protocol's protobuf messages as tritonclient.grpc does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conformance import start_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
PYTHON = ROOT / "bench" / ".venv-kserve" / "bin" / "python"
NAME = "credit-mixed"  # the mixed_model fixture's directory

#: Sends the columns in argv[3] (a JSON file) to the server at argv[1], the model named argv[2],
#: once in binary and once in JSON, and prints what came back; then a request to a wrong name.
CLIENT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, RESTConfig, InferRequest, InferInput

url, name, columns = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))

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
    print(json.dumps(answers))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def kserve_python():
    subprocess.run(["make", "-s", "peer-kserve"], cwd=ROOT, check=True, timeout=900)
    return PYTHON


def test_kserves_rest_client_scores_in_binary_and_in_json(kserve_python, mixed_model, tmp_path):
    frame = mixed_model.frame
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({name: frame[name].tolist() for name in frame.columns}))
    with start_server(mixed_model.path, env={"SCORER_LOAD_PLUGINS": "mlflow"}, record_headers=False) as target:
        run = subprocess.run(
            [str(kserve_python), "-c", CLIENT, target.base_url, NAME, str(columns)],
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
