"""The Open Inference Protocol over gRPC (SCORER_GRPC_PORT), driven by Triton's own gRPC client.

One real server with a passphrase, on a real MLflow model with string, integer and float inputs
(a one-hot encoder into a logistic regression), whose answers must equal the model's in-process
``predict`` on the same rows; gRPC and HTTP share the server's model, credential and metrics.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conformance import start_server
from conformance.target import free_port

pytestmark = pytest.mark.slow

NAME = "credit-mixed"  # the mixed_model fixture's directory (conftest.py)
FIELDS = ["employment", "region", "age", "amount"]
PASSPHRASE = "grpc-test-passphrase"
CREDENTIAL = {"authorization": f"Bearer {PASSPHRASE}"}


@pytest.fixture(scope="module")
def server(mixed_model):
    port = free_port()
    env = {
        "SCORER_LOAD_PLUGINS": "mlflow",
        "SCORER_GRPC_PORT": str(port),
        "SCORER_PASSPHRASE": PASSPHRASE,
        "H2O_SCORER_FORWARD_HEADERS": "X-Tenant-Id",
    }
    with start_server(mixed_model.path, env=env) as running:
        yield SimpleNamespace(http=running, grpc=f"127.0.0.1:{port}")


@pytest.fixture
def client(server):
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(server.grpc)
    yield client
    client.close()


def _inputs(frame):
    """One input per column in its own datatype, as tritonclient sends them: raw contents."""
    import tritonclient.grpc as triton

    inputs = []
    for name in FIELDS:
        column = frame[name].to_numpy()
        datatype = {"O": "BYTES", "i": "INT64", "f": "FP64"}[column.dtype.kind]
        tensor = triton.InferInput(name, [len(column)], datatype)
        tensor.set_data_from_numpy(column.astype(object) if datatype == "BYTES" else column)
        inputs.append(tensor)
    return inputs


def _refused(call):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_probes_and_metadata(client, server, mixed_model):
    assert client.is_server_live() and client.is_server_ready()  # open, as /healthz is
    assert client.is_model_ready(NAME, headers=CREDENTIAL)
    server_metadata = client.get_server_metadata(headers=CREDENTIAL)
    assert server_metadata.name == "scorer_core"
    metadata = client.get_model_metadata(NAME, headers=CREDENTIAL, as_json=True)
    model_id = server.http.get("/model/id", headers={"Authorization": f"Bearer {PASSPHRASE}"}).text
    assert metadata == {
        "name": NAME,
        "versions": [model_id],
        "platform": "mlflow-scorer",
        "inputs": [
            {"name": "employment", "datatype": "BYTES", "shape": ["-1"]},
            {"name": "region", "datatype": "BYTES", "shape": ["-1"]},
            {"name": "age", "datatype": "INT64", "shape": ["-1"]},
            {"name": "amount", "datatype": "FP64", "shape": ["-1"]},
        ],
        "outputs": [{"name": "prediction", "datatype": "INT64", "shape": ["-1"]}],
    }
    assert client.get_model_metadata(NAME, model_id, headers=CREDENTIAL, as_json=True) == metadata


def test_tritonclient_scores_raw_contents_as_the_model_predicts(client, server, mixed_model):
    import tritonclient.grpc as triton

    frame = mixed_model.frame
    result = client.infer(
        NAME,
        _inputs(frame),
        request_id="g-1",
        outputs=[triton.InferRequestedOutput("prediction")],
        headers={**CREDENTIAL, "x-tenant-id": "tenant-7"},
    )
    response = result.get_response()
    assert (response.id, response.model_name) == ("g-1", NAME)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("prediction", "INT64", [len(mixed_model.frame)])
    ]
    got = result.as_numpy("prediction")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, mixed_model.model.predict(frame))
    # gRPC metadata is the forwarded headers: the model saw the tenant, not the credential.
    seen = [call["headers"] for call in server.http.seen_headers() if call.get("headers")]
    assert {"X-Tenant-Id": "tenant-7"} in seen, seen


def test_typed_contents_score_as_raw_contents_do(server, mixed_model):
    """Contents sent in the protocol's typed fields (fp64_contents, bytes_contents, ...), as
    clients other than tritonclient may: through Triton's own messages and a plain channel."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    frame = mixed_model.frame
    request = service_pb2.ModelInferRequest(model_name=NAME)
    for name in FIELDS:
        column = frame[name]
        tensor = request.inputs.add(name=name, shape=[len(column)])
        if column.dtype.kind == "O":
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(v.encode() for v in column)
        elif column.dtype.kind == "i":
            tensor.datatype = "INT64"
            tensor.contents.int64_contents.extend(column.tolist())
        else:
            tensor.datatype = "FP64"
            tensor.contents.fp64_contents.extend(column.tolist())
    with grpc.insecure_channel(server.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=list(CREDENTIAL.items()), timeout=60)
    got = np.frombuffer(response.raw_output_contents[0], "<i8")
    np.testing.assert_array_equal(got, mixed_model.model.predict(frame))


def test_a_wrong_model_name_or_version_is_not_found_with_rests_message(client, server, mixed_model):
    inputs = _inputs(mixed_model.frame)
    refused = _refused(lambda: client.infer("nope", inputs, headers=CREDENTIAL))
    assert refused.status() == "StatusCode.NOT_FOUND"
    message = f"no model named 'nope' is served here; this server serves '{NAME}'"
    assert refused.message() == message
    rest = server.http.post(
        "/v2/models/nope/infer", {"inputs": []}, headers={"Authorization": f"Bearer {PASSPHRASE}"}
    )
    assert (rest.status, rest.json()) == (404, {"error": message})
    refused = _refused(lambda: client.get_model_metadata(NAME, "v0", headers=CREDENTIAL))
    assert refused.status() == "StatusCode.NOT_FOUND"
    assert refused.message().startswith(f"model '{NAME}' has no version 'v0'")


def test_a_malformed_tensor_is_invalid_argument_naming_it(client, mixed_model):
    import tritonclient.grpc as triton

    inputs = _inputs(mixed_model.frame)
    rows = len(mixed_model.frame)
    short = triton.InferInput("age", [rows], "INT64")
    short.set_data_from_numpy(mixed_model.frame["age"].to_numpy())
    short.set_shape([rows + 1])  # one more declared than sent
    refused = _refused(lambda: client.infer(NAME, [*inputs[:2], short, inputs[3]], headers=CREDENTIAL))
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert refused.message() == (
        f"input 'age' declares {rows + 1} INT64 elements ({8 * (rows + 1)} bytes) but its "
        f"raw_input_contents has {8 * rows} bytes"
    )
    refused = _refused(lambda: client.infer(NAME, inputs[:3], headers=CREDENTIAL))
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert refused.message().startswith("no input for the model's fields 'amount'")
    # A text column where the model wants integers: the row and the field, as the H2O path says it.
    text_age = triton.InferInput("age", [rows], "BYTES")
    text_age.set_data_from_numpy(np.array(["forty"] * rows, dtype=object))
    refused = _refused(lambda: client.infer(NAME, [*inputs[:2], text_age, inputs[3]], headers=CREDENTIAL))
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'forty'" in refused.message() and "age" in refused.message()
    assert client.is_server_ready()  # and the server keeps serving


def test_the_passphrase_is_needed_except_for_the_server_probes(client, mixed_model, server):
    inputs = _inputs(mixed_model.frame)
    for call in (
        lambda: client.infer(NAME, inputs),
        lambda: client.get_model_metadata(NAME),
        lambda: client.is_model_ready(NAME),
        lambda: client.get_server_metadata(),
        lambda: client.infer(NAME, inputs, headers={"authorization": "Bearer wrong"}),
    ):
        refused = _refused(call)
        assert refused.status() == "StatusCode.UNAUTHENTICATED"
    assert _refused(lambda: client.infer(NAME, inputs)).message() == (
        "this deployment needs a credential: send Authorization: Bearer <passphrase or token>"
    )
    assert _refused(
        lambda: client.get_server_metadata(headers={"authorization": "Bearer wrong"})
    ).message() == ("the passphrase is wrong")
    assert client.is_server_live() and client.is_server_ready()
    result = client.infer(NAME, inputs, headers=CREDENTIAL)
    np.testing.assert_array_equal(result.as_numpy("prediction"), mixed_model.model.predict(mixed_model.frame))
    metrics = server.http.get("/metrics").text
    assert 'scorer_requests_total{code="401",endpoint="grpc_infer"}' in metrics
    assert 'scorer_requests_total{code="200",endpoint="grpc_infer"}' in metrics
    assert 'scorer_requests_total{code="200",endpoint="grpc_live"}' in metrics
    assert 'scorer_rejected_requests_total{reason="unauthorized"}' in metrics


def test_the_protocols_page_grpc_example_prints_what_its_comment_says(tmp_path_factory):
    """docs/protocols.md's gRPC example, run as written against the demo model it is written for."""
    import contextlib
    import io
    import re
    from pathlib import Path

    page = (Path(__file__).parents[3] / "docs" / "protocols.md").read_text()
    found = re.search(r"<!-- grpc-example: tritonclient-grpc -->\n```python\n(.*?)\n```", page, re.S)
    assert found is not None, "docs/protocols.md has no gRPC example"
    port = free_port()
    env = {
        "SCORER_LOAD_PLUGINS": "mlflow",
        "SCORER_DEMO_DIR": str(tmp_path_factory.mktemp("demo")),
        "SCORER_GRPC_PORT": str(port),
    }
    with start_server(None, env=env, record_headers=False):
        code = found.group(1).replace("localhost:9000", f"127.0.0.1:{port}")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "docs/protocols.md", "exec"), {})
    expected = re.search(r"# (.*)$", code.strip().splitlines()[-1])
    assert expected is not None and printed.getvalue().strip() == expected.group(1)
