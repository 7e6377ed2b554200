"""Conformance checks for the Open Inference Protocol's REST API ("KServe V2"), for any server.

Only the protocol is used: its health, metadata and inference routes, never an endpoint of ours,
so the same checks run against MLServer, KServe's servers or Triton (``scorer check --protocol
oip --url URL --model-name NAME``). Rows are made from the model metadata: one input per declared
input, in its declared datatype, the convention KServe's and MLServer's pandas codecs share.
Subclass ``OIPSuite`` with ``oip_target`` and ``oip_model_name`` fixtures, or use the pytest
plugin's (``--scorer-url`` or ``--scorer-model``, with ``--oip-model-name``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest

from conformance._http import Reply
from conformance.target import ScorerTarget

__all__ = [
    "OIPErrorChecks",
    "OIPInferenceChecks",
    "OIPMetadataChecks",
    "OIPModel",
    "OIPSuite",
    "sample_inputs",
]

#: The protocol's tensor datatypes.
DATATYPES = frozenset(
    {"BOOL", "BYTES", "FP16", "FP32", "FP64"}
    | {f"{kind}{bits}" for kind in ("INT", "UINT") for bits in (8, 16, 32, 64)}
)
#: What a BYTES input gets when the caller gives no sample: text any model can at least parse.
DEFAULT_TEXT = "a"


def _json(reply: Reply, what: str) -> Any:
    assert reply.headers.get("content-type", "").startswith("application/json"), (
        f"{what}: the answer is not declared as JSON ({reply.headers.get('content-type')!r}): {reply}"
    )
    try:
        return reply.json()
    except ValueError:
        raise AssertionError(f"{what}: the answer is not JSON: {reply}") from None


def _is_tensor_metadata(tensor: Any) -> bool:
    return (
        isinstance(tensor, dict)
        and isinstance(tensor.get("name"), str)
        and tensor.get("datatype") in DATATYPES
        and isinstance(tensor.get("shape"), list)
        and all(type(d) is int and d >= -1 for d in tensor["shape"])
    )


def _value(datatype: str, row: int, text: str) -> Any:
    """Row ``row``'s element of a tensor of ``datatype``: varied, small, valid for any model."""
    if datatype == "BYTES":
        return text
    if datatype == "BOOL":
        return row % 2 == 0
    if datatype.startswith("FP"):
        return float(row % 5) + 0.5
    return row % 5


def sample_inputs(
    metadata: dict[str, Any], rows: int, texts: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One input per declared input, ``rows`` elements each, in its declared datatype. ``texts``:
    a valid value per BYTES input (a category the model knows), else ``DEFAULT_TEXT``."""
    inputs = []
    for tensor in metadata["inputs"]:
        datatype = tensor["datatype"]
        text = (texts or {}).get(tensor["name"], DEFAULT_TEXT)
        entry: dict[str, Any] = {
            "name": tensor["name"],
            "datatype": datatype,
            "shape": [rows],
            "data": [_value(datatype, r, text) for r in range(rows)],
        }
        if datatype == "BYTES":
            entry["parameters"] = {"content_type": "str"}
        inputs.append(entry)
    return inputs


def _check_error(reply: Reply, what: str) -> None:
    """A refused request: a 4xx whose body is ``{"error": "..."}``, as the protocol requires."""
    assert 400 <= reply.status < 500, f"{what}: expected a 4xx, got {reply}"
    body = _json(reply, what)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
        f"{what}: the protocol's error body is {{\"error\": \"...\"}}; got {body!r}"
    )


def _check_outputs(body: Any, metadata: dict[str, Any], rows: int, what: str) -> None:
    assert isinstance(body, dict) and isinstance(body.get("outputs"), list) and body["outputs"], (
        f"{what}: no 'outputs' in {body!r}"
    )
    declared = {t["name"]: t for t in metadata["outputs"]}
    for output in body["outputs"]:
        assert _is_tensor_metadata(output), f"{what}: an output is not a tensor: {output!r}"
        assert output["name"] in declared, f"{what}: output {output['name']!r} is not in the model metadata"
        data = output.get("data")
        assert isinstance(data, list), f"{what}: output {output['name']!r} has no JSON data: {output!r}"
        shape = output["shape"]
        assert shape and all(d >= 0 for d in shape), (
            f"{what}: output {output['name']!r} has shape {shape}: an answer's shape says its sizes"
        )
        flat = _flattened(data)
        assert len(flat) == math.prod(shape), (
            f"{what}: output {output['name']!r} has shape {output['shape']} but {len(flat)} elements"
        )
        assert output["shape"][0] == rows, (
            f"{what}: {rows} rows sent, output {output['name']!r} has shape {output['shape']}"
        )


def _flattened(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        flat.extend(_flattened(item) if isinstance(item, list) else [item])
    return flat


@dataclass(frozen=True)
class OIPModel:
    """The model under test: the server, its name, its metadata, and texts its BYTES inputs take."""

    target: ScorerTarget
    name: str
    metadata: dict[str, Any]
    texts: dict[str, str]

    def inputs(self, rows: int) -> list[dict[str, Any]]:
        return sample_inputs(self.metadata, rows, self.texts)

    def infer(self, body: Any = None, **kwargs: Any) -> Reply:
        return self.target.post(f"/v2/models/{self.name}/infer", body, **kwargs)


_JSON_TYPE = {"Content-Type": "application/json"}


class OIPMetadataChecks:
    """Health, server metadata and model metadata."""

    def test_server_is_live_and_ready(self, oip_target: ScorerTarget) -> None:
        for path in ("/v2/health/live", "/v2/health/ready"):
            reply = oip_target.get(path)
            assert reply.status == 200, f"GET {path}: {reply}"

    def test_model_is_ready(self, oip_model: OIPModel) -> None:
        path = f"/v2/models/{oip_model.name}/ready"
        reply = oip_model.target.get(path)
        assert reply.status == 200, f"GET {path}: {reply}"

    def test_server_metadata_names_the_server_and_its_version(self, oip_target: ScorerTarget) -> None:
        body = _json(oip_target.get("/v2"), "GET /v2")
        assert isinstance(body.get("name"), str) and body["name"], body
        assert isinstance(body.get("version"), str), body
        assert isinstance(body.get("extensions", []), list), body
        assert all(isinstance(e, str) for e in body.get("extensions", [])), body

    def test_model_metadata_describes_tensors(self, oip_model: OIPModel) -> None:
        metadata = oip_model.metadata
        assert metadata.get("name") == oip_model.name, metadata
        assert isinstance(metadata.get("platform"), str), metadata
        for key in ("inputs", "outputs"):
            tensors = metadata.get(key)
            assert isinstance(tensors, list) and tensors, f"no {key} in the model metadata: {metadata}"
            bad = [t for t in tensors if not _is_tensor_metadata(t)]
            assert not bad, f"{key} that are not tensor metadata (name, a protocol datatype, shape): {bad}"
        versions = metadata.get("versions", [])
        assert isinstance(versions, list) and all(isinstance(v, str) for v in versions), metadata


class OIPInferenceChecks:
    """Inference in the pandas convention, with each datatype the model declares."""

    def test_one_row_in_each_declared_datatype(self, oip_model: OIPModel) -> None:
        reply = oip_model.infer({"id": "check-1", "inputs": oip_model.inputs(1)})
        assert reply.status == 200, reply
        body = _json(reply, "infer")
        assert body.get("id") == "check-1", f"the request's id is not echoed: {body.get('id')!r}"
        assert body.get("model_name") == oip_model.name, body
        _check_outputs(body, oip_model.metadata, 1, "infer of one row")

    def test_many_rows_come_back_as_many(self, oip_model: OIPModel) -> None:
        reply = oip_model.infer({"inputs": oip_model.inputs(7)})
        assert reply.status == 200, reply
        _check_outputs(_json(reply, "infer"), oip_model.metadata, 7, "infer of seven rows")

    def test_inputs_of_shape_n_by_1(self, oip_model: OIPModel) -> None:
        inputs = oip_model.inputs(3)
        for tensor in inputs:
            tensor["shape"] = [3, 1]
        reply = oip_model.infer({"inputs": inputs})
        assert reply.status == 200, reply
        _check_outputs(_json(reply, "infer"), oip_model.metadata, 3, "infer of [3, 1] inputs")

    def test_requested_outputs_are_the_ones_answered(self, oip_model: OIPModel) -> None:
        wanted = oip_model.metadata["outputs"][0]["name"]
        reply = oip_model.infer({"inputs": oip_model.inputs(2), "outputs": [{"name": wanted}]})
        assert reply.status == 200, reply
        outputs = _json(reply, "infer")["outputs"]
        assert [o["name"] for o in outputs] == [wanted], outputs


class OIPErrorChecks:
    """Refusals: a 4xx with ``{"error": ...}``, and the server keeps serving."""

    def test_a_wrong_model_name(self, oip_model: OIPModel) -> None:
        other = OIPModel(oip_model.target, "no-such-model-f3a9", oip_model.metadata, oip_model.texts)
        _check_error(other.infer({"inputs": other.inputs(1)}), "infer of an unknown model")
        _check_error(other.target.get(f"/v2/models/{other.name}"), "metadata of an unknown model")

    def test_shape_and_data_length_disagree(self, oip_model: OIPModel) -> None:
        inputs = oip_model.inputs(2)
        inputs[0]["shape"] = [3]
        _check_error(oip_model.infer({"inputs": inputs}), "an input of shape [3] with 2 elements")

    def test_an_unknown_datatype(self, oip_model: OIPModel) -> None:
        inputs = oip_model.inputs(1)
        inputs[0]["datatype"] = "FLOAT64X"
        _check_error(oip_model.infer({"inputs": inputs}), "an input of datatype FLOAT64X")

    def test_a_body_that_is_not_json(self, oip_model: OIPModel) -> None:
        _check_error(oip_model.infer(raw=b'{"inputs": [', headers=_JSON_TYPE), "a body that is not JSON")

    def test_the_server_keeps_serving_after_errors(self, oip_model: OIPModel) -> None:
        for _ in range(3):
            oip_model.infer(raw=b"[", headers=_JSON_TYPE)
        reply = oip_model.infer({"inputs": oip_model.inputs(1)})
        assert reply.status == 200, reply


class OIPSuite(OIPMetadataChecks, OIPInferenceChecks, OIPErrorChecks):
    """Every Open Inference Protocol check, over the ``oip_target`` and ``oip_model_name`` fixtures."""

    @pytest.fixture(scope="class")
    @classmethod
    def oip_texts(cls, request: pytest.FixtureRequest) -> dict[str, str]:
        """A valid value per BYTES input, for models that refuse categories they never saw:
        ``--oip-texts '{"city": "Oslo"}'``, or override this fixture in a subclass."""
        return texts_option(request.config.getoption("--oip-texts", None))

    @pytest.fixture(scope="class")
    @classmethod
    def oip_model(cls, oip_target: ScorerTarget, oip_model_name: str, oip_texts: dict[str, str]) -> OIPModel:
        reply = oip_target.get(f"/v2/models/{oip_model_name}")
        assert reply.status == 200, f"GET /v2/models/{oip_model_name}: {reply}"
        return OIPModel(oip_target, oip_model_name, dict(_json(reply, "model metadata")), oip_texts)


def texts_option(raw: str | None) -> dict[str, str]:
    """``--oip-texts``'s JSON object of input name to text."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise pytest.UsageError('--oip-texts takes a JSON object of input names to texts: {"city": "Oslo"}')
    return value
