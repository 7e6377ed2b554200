"""The Open Inference Protocol over HTTP, driven by Triton's own client and by plain JSON bodies.

One real server per model, on a real MLflow model with string, integer and float inputs (a
one-hot encoder into a logistic regression), whose answers must equal the model's in-process
``predict`` on the same rows.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conformance import start_server

pytestmark = pytest.mark.slow

ENV = {"SCORER_LOAD_PLUGINS": "mlflow"}
NAME = "credit-mixed"  # the mixed_model fixture's directory
FIELDS = ["employment", "region", "age", "amount"]


@pytest.fixture(scope="module")
def target(mixed_model):
    with start_server(mixed_model.path, env=ENV, record_headers=False) as running:
        yield running


def _pd_inputs(frame, shape_suffix=()):
    """One input per column, as KServe's and MLServer's pandas codecs send a frame."""
    inputs = []
    for name in frame.columns:
        values = frame[name]
        datatype = {"f": "FP64", "i": "INT64"}.get(values.dtype.kind, "BYTES")
        entry = {"name": name, "datatype": datatype, "shape": [len(values), *shape_suffix], "data": values.tolist()}
        if datatype == "BYTES":
            entry["parameters"] = {"content_type": "str"}
        inputs.append(entry)
    return inputs


def _infer(target, body, path=f"/v2/models/{NAME}/infer", **kwargs):
    return target.post(path, body, **kwargs)


def test_tritonclient_scores_each_column_in_its_own_datatype_in_binary(target, mixed_model):
    import tritonclient.http as triton

    frame = mixed_model.frame
    client = triton.InferenceServerClient(target.base_url.split("//", 1)[1].rstrip("/"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(NAME)
        inputs = []
        for name in FIELDS:
            column = frame[name].to_numpy()
            if column.dtype.kind == "O":
                tensor = triton.InferInput(name, [len(column)], "BYTES")
                tensor.set_data_from_numpy(column.astype(object))  # binary_data=True: tritonclient's default
            else:
                tensor = triton.InferInput(name, [len(column)], "INT64" if column.dtype.kind == "i" else "FP64")
                tensor.set_data_from_numpy(column)
            inputs.append(tensor)
        result = client.infer(NAME, inputs, request_id="r-1")
        assert result.get_response()["id"] == "r-1"
        assert result.get_response()["model_name"] == NAME
        got = result.as_numpy("prediction")
        assert got is not None and got.dtype == np.int64
        np.testing.assert_array_equal(got, mixed_model.model.predict(frame))

        # The same in JSON, inputs and the one output asked for.
        for tensor in inputs:
            column = frame[tensor.name()].to_numpy()
            tensor.set_data_from_numpy(
                column.astype(object) if tensor.datatype() == "BYTES" else column, binary_data=False
            )
        wanted = [triton.InferRequestedOutput("prediction", binary_data=False)]
        result = client.infer(NAME, inputs, outputs=wanted)
        assert "data" in result.get_response()["outputs"][0]
        np.testing.assert_array_equal(result.as_numpy("prediction"), mixed_model.model.predict(frame))
    finally:
        client.close()


def test_model_metadata_lists_each_field_with_its_datatype(target, mixed_model):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(target.base_url.split("//", 1)[1].rstrip("/"))
    try:
        metadata = client.get_model_metadata(NAME)
        server = client.get_server_metadata()
    finally:
        client.close()
    assert metadata["name"] == NAME
    assert metadata["platform"] == "mlflow-scorer"
    model_id = target.get("/model/id").text
    assert metadata["versions"] == [model_id]
    assert metadata["inputs"] == [
        {"name": "employment", "datatype": "BYTES", "shape": [-1]},
        {"name": "region", "datatype": "BYTES", "shape": [-1]},
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "amount", "datatype": "FP64", "shape": [-1]},
    ]
    assert metadata["outputs"] == [{"name": "prediction", "datatype": "INT64", "shape": [-1]}]
    assert server["name"] == "scorer_core" and "binary_tensor_data" in server["extensions"]
    assert target.get(f"/v2/models/{NAME}/versions/{model_id}").json() == metadata


def test_a_json_body_in_the_pandas_convention_with_n_by_1_shapes(target, mixed_model):
    frame = mixed_model.frame
    reply = _infer(target, {"id": "42", "inputs": _pd_inputs(frame, (1,))})
    assert reply.status == 200, reply
    body = reply.json()
    assert body["id"] == "42" and body["model_name"] == NAME
    assert body["model_version"] == target.get("/model/id").text
    (output,) = body["outputs"]
    assert output["name"] == "prediction" and output["datatype"] == "INT64" and output["shape"] == [len(frame)]
    assert output["data"] == mixed_model.model.predict(frame).tolist()


def test_a_request_without_an_id_gets_one(target, mixed_model):
    body = _infer(target, {"inputs": _pd_inputs(mixed_model.frame.iloc[:1])}).json()
    assert re.fullmatch(r"[0-9a-f-]{36}", body["id"]), body


def test_one_two_dimensional_tensor_of_every_field_in_schema_order(target, mixed_model):
    frame = mixed_model.frame
    cells = [str(value) for row in frame[FIELDS].itertuples(index=False) for value in row]
    tensor = {"name": "input-0", "datatype": "BYTES", "shape": [len(frame), len(FIELDS)], "data": cells}
    reply = _infer(target, {"inputs": [tensor]})
    assert reply.status == 200, reply
    assert reply.json()["outputs"][0]["data"] == mixed_model.model.predict(frame).tolist()


def test_nested_data_is_read_row_major(target, mixed_model):
    frame = mixed_model.frame.iloc[:3]
    rows = [[str(value) for value in row] for row in frame[FIELDS].itertuples(index=False)]
    tensor = {"name": "input-0", "datatype": "BYTES", "shape": [3, len(FIELDS)], "data": rows}
    reply = _infer(target, {"inputs": [tensor]})
    assert reply.status == 200, reply
    assert reply.json()["outputs"][0]["data"] == mixed_model.model.predict(frame).tolist()


def test_oip_and_h2o_requests_get_the_same_answers(target, mixed_model):
    frame = mixed_model.frame
    h2o = target.post(
        "/model/score",
        {"fields": FIELDS, "rows": [[str(v) for v in row] for row in frame[FIELDS].itertuples(index=False)]},
    )
    oip = _infer(target, {"inputs": _pd_inputs(frame)})
    assert h2o.status == oip.status == 200
    assert [int(row[0]) for row in h2o.json()["score"]] == oip.json()["outputs"][0]["data"]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        (lambda b: b["inputs"][0].update(shape=[3]), 400, "holds 3 elements, but its data has 2"),
        (lambda b: b["inputs"][0].update(datatype="STRING"), 400, "has datatype 'STRING'"),
        (lambda b: b["inputs"][2].update(data=["old", 30]), 400, "element 0 of input 'age' is 'old'"),
        (lambda b: b["inputs"][2].update(data=[1.5, 30]), 400, "not INT64 (an integer)"),
        (lambda b: b["inputs"].pop(1), 400, "no input for the model's fields 'region'"),
        (lambda b: b["inputs"][1].update(shape=[1, 2]), 400, "holds one column: [N] or [N, 1]"),
        (lambda b: b["inputs"][3].update(shape=[1], data=[1.0]), 400, "different numbers of rows"),
        (lambda b: b.update(outputs=[{"name": "nope"}]), 400, "the model has no output 'nope'"),
        (lambda b: b.update(inputs=[]), 400, "'inputs' must be a non-empty array"),
        (lambda b: b["inputs"].append(dict(b["inputs"][0])), 400, "duplicate inputs: 'employment'"),
    ],
    ids=[
        "shape-and-data-disagree",
        "unknown-datatype",
        "text-in-an-integer-tensor",
        "fraction-in-an-integer-tensor",
        "a-field-missing",
        "a-field-of-two-columns",
        "ragged-columns",
        "unknown-output",
        "no-inputs",
        "duplicate-input",
    ],
)
def test_malformed_tensors_are_a_400_naming_the_problem(target, mixed_model, change, status, says):
    body = {"inputs": _pd_inputs(mixed_model.frame.iloc[:2])}
    change(body)
    reply = _infer(target, body)
    assert reply.status == status, reply
    assert set(reply.json()) == {"error"}
    assert says in reply.json()["error"], reply.json()
    assert _infer(target, {"inputs": _pd_inputs(mixed_model.frame.iloc[:1])}).status == 200


def test_a_body_that_is_not_json_is_a_400(target):
    reply = _infer(target, None, raw=b"{not json")
    assert reply.status == 400 and "not valid JSON" in reply.json()["error"]


def test_a_wrong_model_name_or_version_is_a_404_with_an_error_body(target, mixed_model):
    body = {"inputs": _pd_inputs(mixed_model.frame.iloc[:1])}
    for path in ("/v2/models/other/infer", f"/v2/models/{NAME}/versions/v9/infer"):
        reply = _infer(target, body, path=path)
        assert reply.status == 404, reply
        assert set(reply.json()) == {"error"}
    assert "this server serves 'credit-mixed'" in _infer(target, body, path="/v2/models/other/infer").text
    for path in ("/v2/models/other", "/v2/models/other/ready", f"/v2/models/{NAME}/versions/v9/ready"):
        reply = target.get(path)
        assert reply.status == 404 and "error" in reply.json(), (path, reply)


def test_health_and_readiness(target):
    assert target.get("/v2/health/live").json() == {"live": True}
    assert target.get("/v2/health/ready").json() == {"ready": True}
    assert target.get(f"/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}


def test_requests_are_counted_under_their_own_endpoint_labels(target, mixed_model):
    _infer(target, {"inputs": _pd_inputs(mixed_model.frame.iloc[:1])})
    _infer(target, {"inputs": []})
    target.get("/v2/models/someone-elses/ready")
    metrics = target.get("/metrics").text
    assert re.search(r'scorer_requests_total\{code="200",endpoint="oip_infer"\} [1-9]', metrics), metrics
    assert re.search(r'scorer_requests_total\{code="400",endpoint="oip_infer"\} [1-9]', metrics)
    assert re.search(r'scorer_requests_total\{code="404",endpoint="oip_model_ready"\} [1-9]', metrics)
    assert "someone-elses" not in metrics


def test_the_deployment_prefix_and_the_credential_apply(mixed_model):
    env = {**ENV, "SCORER_PASSPHRASE": "open sesame", "MODEL_NAME": "renamed"}
    with start_server(mixed_model.path, env=env, record_headers=False) as running:
        body = {"inputs": _pd_inputs(mixed_model.frame.iloc[:2])}
        refused = running.post("/v2/models/renamed/infer", body)
        assert refused.status == 401 and set(refused.json()) == {"error"}, refused
        assert running.get("/v2/models/renamed").status == 401
        assert running.get("/v2/health/ready").status == 200  # probes stay open, as /readyz is
        auth = {"Authorization": "Bearer open sesame"}
        reply = running.post("/deployment-7/v2/models/renamed/infer", body, headers=auth)
        assert reply.status == 200, reply
        assert reply.json()["model_name"] == "renamed"
        assert reply.json()["outputs"][0]["data"] == mixed_model.model.predict(mixed_model.frame.iloc[:2]).tolist()
        assert running.post(f"/v2/models/{NAME}/infer", body, headers=auth).status == 404


def test_binary_outputs_of_a_json_request(target, mixed_model):
    frame = mixed_model.frame.iloc[:4]
    body = {"inputs": _pd_inputs(frame), "parameters": {"binary_data_output": True}}
    raw = json.dumps(body).encode()
    import http.client

    host, port = target.base_url.split("//", 1)[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", f"/v2/models/{NAME}/infer", body=raw, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        length = int(response.getheader("Inference-Header-Content-Length"))
    finally:
        connection.close()
    header = json.loads(payload[:length])
    (output,) = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 8 * len(frame)} and "data" not in output
    values = np.frombuffer(payload[length:], dtype="<i8")
    np.testing.assert_array_equal(values, mixed_model.model.predict(frame))
