"""The Open Inference Protocol's gRPC messages (wire/oip_proto.py) and their translation to and
from wire/oip.py's requests and answers (wire/oip_grpc.py); no server."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from scorer_core.errors import InvalidRequest
from scorer_core.schema import DataType, Field
from scorer_core.wire import oip_proto
from scorer_core.wire.oip import frame_of, parse_infer
from scorer_core.wire.oip_grpc import infer_request, infer_response

MESSAGES = oip_proto.messages()
Request = MESSAGES["ModelInferRequest"]
Response = MESSAGES["ModelInferResponse"]
FIELDS = [Field("city", DataType.STR), Field("age", DataType.INT64), Field("amount", DataType.FLOAT64)]


def _shape(descriptor):
    """A message's wire facts: each field's number, name, type, cardinality, message type and
    oneof, nested messages included."""
    fields = tuple(
        (
            f.number,
            f.name,
            f.type,
            f.is_repeated if hasattr(f, "is_repeated") else f.label == f.LABEL_REPEATED,
            f.message_type.full_name if f.message_type else None,
            f.containing_oneof.name if f.containing_oneof else None,
        )
        for f in sorted(descriptor.fields, key=lambda f: f.number)
    )
    nested = tuple(sorted((n.name, _shape(n)) for n in descriptor.nested_types))
    return fields, nested


def test_every_message_and_method_has_the_wire_facts_of_tritonclients_descriptors():
    triton = pytest.importorskip("tritonclient.grpc.service_pb2")
    ours = oip_proto.file_descriptor()
    assert ours.package == triton.DESCRIPTOR.package == "inference"
    for name, message in ours.message_types_by_name.items():
        assert _shape(message) == _shape(triton.DESCRIPTOR.message_types_by_name[name]), name
    service = ours.services_by_name["GRPCInferenceService"]
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in service.methods] == [m for m, _, _ in oip_proto.METHODS]
    for method in service.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name,
            other.output_type.full_name,
        )


def test_our_messages_live_beside_tritonclients_in_one_process_and_read_each_others_bytes():
    triton = pytest.importorskip("tritonclient.grpc.service_pb2")
    theirs = triton.ModelInferRequest(model_name="m", id="r")
    tensor = theirs.inputs.add(name="x", datatype="FP64", shape=[2])
    tensor.parameters["content_type"].string_param = "str"
    theirs.raw_input_contents.append(np.array([1.5, 2.5]).tobytes())
    ours = Request.FromString(theirs.SerializeToString())
    assert ours.inputs[0].parameters["content_type"].string_param == "str"
    assert triton.ModelInferRequest.FromString(ours.SerializeToString()) == theirs


def test_the_committed_proto_file_is_the_descriptor_spelt_as_source():
    committed = Path(__file__).resolve().parents[1] / "docs" / "inference.proto"
    assert committed.read_text() == oip_proto.proto_text(), (
        "docs/inference.proto is stale: regenerate it with python -c 'from scorer_core.wire.oip_proto "
        'import proto_text; print(proto_text(), end="")\' > docs/inference.proto'
    )


def _bytes(*texts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(t)) + t for t in texts)


def _raw_request() -> object:
    request = Request(model_name="m", id="r-1")
    request.inputs.add(name="city", datatype="BYTES", shape=[2])
    request.inputs.add(name="age", datatype="INT64", shape=[2, 1])
    request.inputs.add(name="amount", datatype="FP64", shape=[2])
    request.raw_input_contents.extend(
        [
            _bytes(b"Oslo", "Tromsø".encode()),
            np.array([30, 41], "<i8").tobytes(),
            np.array([1.5, 2.0], "<f8").tobytes(),
        ]
    )
    return request


def test_raw_contents_give_the_rows_the_rest_binary_extension_gives():
    request = infer_request(_raw_request())
    assert request.id == "r-1"
    raw = _raw_request().raw_input_contents
    header = (
        b'{"inputs": [{"name": "city", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": %d}},'
        b' {"name": "age", "datatype": "INT64", "shape": [2, 1], "parameters": {"binary_data_size": 16}},'
        b' {"name": "amount", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}}]}'
    ) % len(raw[0])
    blob = b"".join(raw)
    rest = parse_infer(header + blob, str(len(header)))
    grpc_rows, rest_rows = frame_of(request, FIELDS, None), frame_of(rest, FIELDS, None)
    for spec in FIELDS:
        np.testing.assert_array_equal(grpc_rows[spec.name], rest_rows[spec.name])
    assert grpc_rows["city"].tolist() == ["Oslo", "Tromsø"]


def test_typed_contents_give_the_same_rows():
    request = Request(model_name="m")
    city = request.inputs.add(name="city", datatype="BYTES", shape=[2])
    city.contents.bytes_contents.extend([b"Oslo", "Tromsø".encode()])
    request.inputs.add(name="age", datatype="INT64", shape=[2]).contents.int64_contents.extend([30, 41])
    request.inputs.add(name="amount", datatype="FP64", shape=[2]).contents.fp64_contents.extend([1.5, 2.0])
    rows = frame_of(infer_request(request), FIELDS, None)
    expected = frame_of(infer_request(_raw_request()), FIELDS, None)
    for spec in FIELDS:
        np.testing.assert_array_equal(rows[spec.name], expected[spec.name])


def _one_input(datatype: str, shape: list[int], **contents: list[object]) -> object:
    request = Request(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Request(model_name="m"), "'inputs' must be a non-empty array of input tensors"),
        (
            _one_input("FP64", [3], fp64_contents=[1.0, 2.0]),
            "input 'x' has shape [3], which holds 3 elements, but its data has 2",
        ),
        (
            _one_input("FP64", [2], int64_contents=[1, 2]),
            "input 'x' of datatype FP64 has its data in int64_contents; FP64 data goes in fp64_contents",
        ),
        (
            _one_input("FP16", [1]),
            "input 'x' of datatype FP16 has no raw_input_contents; FP16 data goes in raw_input_contents only",
        ),
        (
            _one_input("FLOAT", [1], fp64_contents=[1.0]),
            "input 'x' has datatype 'FLOAT'; the protocol's datatypes are",
        ),
        (
            _one_input("INT8", [1], int_contents=[300]),
            "the data of input 'x' holds an integer beyond INT8's range",
        ),
        (_one_input("BYTES", [1], bytes_contents=[b"\xff"]), "element 0 of input 'x' is not UTF-8 text"),
        (
            _one_input("FP64", [-1], fp64_contents=[1.0]),
            "input 'x' has shape [-1]; a shape is an array of 1 to 8 sizes, each a whole number below 2**64",
        ),
    ],
)
def test_a_malformed_tensor_is_an_invalid_request_naming_it(request_, message):
    with pytest.raises(InvalidRequest) as caught:
        infer_request(request_)
    assert str(caught.value).startswith(message)


def test_raw_contents_that_disagree_with_the_inputs_are_invalid():
    request = _raw_request()
    request.raw_input_contents.pop()
    with pytest.raises(InvalidRequest, match="3 inputs but 2 raw_input_contents"):
        infer_request(request)
    request = _raw_request()
    request.inputs[2].contents.fp64_contents.append(1.0)
    with pytest.raises(InvalidRequest, match="input 'amount' has both contents and raw_input_contents"):
        infer_request(request)
    request = _raw_request()
    request.raw_input_contents[2] = request.raw_input_contents[2][:-1]
    with pytest.raises(
        InvalidRequest,
        match=r"^input 'amount' declares 2 FP64 elements \(16 bytes\) but its raw_input_contents has 15 bytes$",
    ):
        infer_request(request)
    request = _raw_request()
    request.inputs[1].name = "city"
    with pytest.raises(InvalidRequest, match="duplicate inputs: 'city'"):
        infer_request(request)


def test_answers_are_raw_contents_in_each_fields_declared_datatype():
    request = _raw_request()
    request.outputs.add(name="label")
    parsed = infer_request(request)
    outputs = {"p": np.array([0.25, np.nan]), "label": np.array(["yes", None], dtype=object)}
    fields = [Field("p", DataType.FLOAT32), Field("label", DataType.STR)]
    response = infer_response(Response, "m", "v1", parsed, fields, outputs)
    assert (response.model_name, response.model_version, response.id) == ("m", "v1", "r-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("label", "BYTES", [2])]
    assert response.raw_output_contents == [_bytes(b"yes", b"")]
    parsed = infer_request(_raw_request())
    response = infer_response(Response, "m", "v1", parsed, fields, outputs)
    assert [o.datatype for o in response.outputs] == ["FP32", "BYTES"]
    np.testing.assert_array_equal(
        np.frombuffer(response.raw_output_contents[0], "<f4"), np.array([0.25, np.nan], np.float32)
    )


def test_typed_contents_count_toward_the_size_that_sends_work_off_the_event_loop():
    from scorer_core.server.h2o_routes import OFF_LOOP_BYTES
    from scorer_core.wire.oip_grpc import raw_bytes

    rows = OFF_LOOP_BYTES // 8 + 1
    typed = _one_input("FP64", [rows], fp64_contents=[1.5] * rows)
    assert raw_bytes(typed) >= OFF_LOOP_BYTES  # counted 0 before: a 57 MB request stayed on the loop
    assert raw_bytes(_one_input("FP64", [1], fp64_contents=[1.5])) < OFF_LOOP_BYTES


def test_thousands_of_inputs_with_duplicates_are_named_ten_at_a_time():
    request = Request(model_name="m")
    for n in range(30_000):
        request.inputs.add(name=f"i{n % 15_000}", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    with pytest.raises(InvalidRequest) as caught:
        infer_request(request)
    assert str(caught.value).startswith("duplicate inputs: 'i0', 'i1', 'i10'")
    assert "more" in str(caught.value)
