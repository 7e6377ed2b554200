"""The Open Inference Protocol's gRPC inference messages: ``ModelInferRequest`` to ``wire.oip``'s
``InferRequest``, and output columns to ``ModelInferResponse``.

Everything past the tensors (rows in either tabular spelling, cells typed as the H2O path types
them, the outputs a request names) is ``wire.oip``'s, shared with REST, so a row gets the same
answer whichever protocol carried it. What is gRPC's own: an input's elements come either as raw
bytes (``raw_input_contents``, one entry per input, in the binary extension's layout) or as typed
``contents`` (``fp64_contents``, ``bytes_contents``, ...); answers go back as
``raw_output_contents``, which tritonclient reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scorer_core.errors import InvalidRequest
from scorer_core.schema import Field
from scorer_core.wire.oip import (
    DATATYPE_OF,
    DATATYPES,
    InferRequest,
    RequestedOutput,
    Tensor,
    binary_output,
    binary_tensor,
    check_unique_inputs,
    chosen_outputs,
    input_label,
    listed_tensor,
)

__all__ = ["CONTENTS_OF", "infer_request", "infer_response", "raw_bytes"]

#: Where ``InferTensorContents`` holds each datatype's elements (FP16 has no field: raw only).
CONTENTS_OF: Mapping[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FIELDS = frozenset(CONTENTS_OF.values())


def raw_bytes(request: Any) -> int:
    """How many bytes a ``ModelInferRequest`` is (how large its work is): raw contents and typed
    ones alike, since typed ``contents`` of millions of elements are as much work to read."""
    return int(request.ByteSize())


def infer_request(request: Any) -> InferRequest:
    """The ``InferRequest`` a ``ModelInferRequest`` spells; ``InvalidRequest`` naming the input
    and what is wrong with it, in the words REST uses for the same fault."""
    inputs = request.inputs
    if not inputs:
        raise InvalidRequest("'inputs' must be a non-empty array of input tensors")
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InvalidRequest(
            f"the request has {len(inputs)} inputs but {len(raw)} raw_input_contents; with raw "
            "contents each input has one, in the inputs' order"
        )
    tensors: list[Tensor] = []
    for index, tensor in enumerate(inputs):
        shape = list(tensor.shape)
        filled = [field.name for field, _ in tensor.contents.ListFields()]
        if raw:
            if filled:
                raise InvalidRequest(
                    f"{input_label(tensor.name)} has both contents and raw_input_contents; send one"
                )
            size = "its raw_input_contents has {} bytes"
            tensors.append(binary_tensor(index, tensor.name, tensor.datatype, shape, raw[index], size))
            continue
        tensors.append(_listed(index, tensor, shape, filled))
    check_unique_inputs(tensors)
    outputs = tuple(RequestedOutput(output.name, True) for output in request.outputs)
    return InferRequest(id=request.id, inputs=tuple(tensors), outputs=outputs or None, binary_outputs=True)


def _listed(index: int, tensor: Any, shape: list[int], filled: list[str]) -> Tensor:
    """An input from its typed ``contents``: the one field its datatype's elements go in."""
    datatype = tensor.datatype
    expected = CONTENTS_OF.get(datatype)
    if expected is None or filled not in ([expected], []):
        if datatype not in DATATYPES:
            listed_tensor(index, tensor.name, datatype, shape, [])  # names the protocol's datatypes
        where = f"in {expected}" if expected is not None else "in raw_input_contents only"
        found = f"its data in {', '.join(filled)}" if filled else "no raw_input_contents"
        raise InvalidRequest(
            f"{input_label(tensor.name)} of datatype {datatype} has {found}; {datatype} data goes {where}"
        )
    elements: Sequence[Any] = getattr(tensor.contents, expected)
    if datatype == "BYTES":
        texts = []
        for position, value in enumerate(elements):
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidRequest(
                    f"element {position} of {input_label(tensor.name)} is not UTF-8 text"
                ) from None
        elements = texts
    return listed_tensor(index, tensor.name, datatype, shape, elements)


def infer_response(
    response_class: Any,
    model_name: str,
    model_version: str,
    request: InferRequest,
    fields: Sequence[Field],
    outputs: Mapping[str, np.ndarray],
) -> Any:
    """The ``ModelInferResponse`` (of ``response_class``) holding the outputs the request chose
    (``wire.oip.chosen_outputs``), each in its field's declared datatype as raw contents."""
    response = response_class(model_name=model_name, model_version=model_version, id=request.id)
    for spec, _ in chosen_outputs(request, fields):
        column = outputs[spec.name]
        response.outputs.add(name=spec.name, datatype=DATATYPE_OF[spec.data_type], shape=[len(column)])
        response.raw_output_contents.append(binary_output(column, spec))
    return response
