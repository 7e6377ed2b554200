"""The Open Inference Protocol's REST bodies ("KServe V2"): tensors in, tensors out.

An inference request carries named tensors (a datatype, a shape, and row-major data, in the JSON
body or, with the binary tensor data extension tritonclient uses by default, as raw bytes after
it). A tabular model's rows arrive in one of two spellings, and both become the same ``Frame``:

- one input per model field, named after it, of shape ``[N]`` or ``[N, 1]`` (the convention of
  KServe's and MLServer's ``pd`` codecs: strings as ``BYTES``, numbers in their own datatypes);
- one ``[N, F]`` tensor holding every field in the model's schema order (a client that sends
  tensors, an all-numeric model).

A cell is then typed as the H2O path types it (``wire.cells``), so a row gets the same answer
whichever protocol spelt it. Answers go back as one ``[N]`` tensor per output field. Pure
functions of bytes and schemas: no HTTP here.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

from scorer_core.config.ids import random_uuid
from scorer_core.errors import InvalidRequest, ModelError
from scorer_core.frame import Frame
from scorer_core.schema import DataType, Field
from scorer_core.wire.cellrows import KEPT_ROWS, CellRows, Typed
from scorer_core.wire.cells import convert_column, echoed, shortened
from scorer_core.wire.columns import cell_of
from scorer_core.wire.native import plain_request, plain_tensors
from scorer_core.wire.oip_pieces import parse_in_pieces
from scorer_core.wire.rows_array import PARSE_CHUNK_BYTES

__all__ = [
    "DATATYPE_OF",
    "HEADER_LENGTH",
    "InferRequest",
    "RequestedOutput",
    "Tensor",
    "binary_output",
    "binary_tensor",
    "check_outputs",
    "chosen_outputs",
    "frame_of",
    "infer_response",
    "input_label",
    "listed_tensor",
    "parse_infer",
    "rows_of",
    "tensor_metadata",
]

#: Bodies from this size are parsed in pieces. Below it one orjson call holds the GIL for under
#: about 20 ms, and is faster: finding the pieces added 3 ms to a 2 MB body's 13.
PIECES_FROM_BYTES = 4 * 1024 * 1024

#: The request and response header giving the JSON part's length when binary tensors follow it.
HEADER_LENGTH = "inference-header-content-length"

#: The tensor datatype a model field of each type is declared as in model metadata and answers.
DATATYPE_OF: Mapping[DataType, str] = {
    DataType.BOOL: "BOOL",
    DataType.INT32: "INT32",
    DataType.INT64: "INT64",
    DataType.FLOAT32: "FP32",
    DataType.FLOAT64: "FP64",
    DataType.STR: "BYTES",
    DataType.TIME64: "BYTES",  # ISO 8601 text, as the H2O path sends times
}

#: The element of each fixed-size datatype, little-endian as the binary extension sends it.
_ELEMENTS: Mapping[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "UINT8": "<u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "<i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
DATATYPES = frozenset({*_ELEMENTS, "BYTES"})
#: The most dimensions a tensor may have: a tabular request needs two, an image four or five, and
#: a shape of thousands of huge sizes made a number of thousands of digits to multiply and print.
MAX_DIMENSIONS = 8
#: Each size must fit an unsigned 64-bit integer, as the protocol says.
_SIZE_LIMIT = 2**64
_LENGTH = struct.Struct("<I")


class Tensor(NamedTuple):
    """One input tensor: its elements flat, in row-major order (a list of values as JSON sent
    them; a numpy array of what binary data held, or of a large body's floats, parsed in pieces
    by ``wire.oip_pieces``). A tuple, not a dataclass: a request makes one per field, and a
    frozen dataclass took a microsecond each to build."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[Any]


@dataclass(frozen=True)
class RequestedOutput:
    """An output the request names, and whether it wants it as binary data."""

    name: str
    binary: bool


class InferRequest(NamedTuple):
    """A parsed inference request. ``outputs`` ``None``: every output, binary when
    ``binary_outputs`` (tritonclient asks so when it names none). A tuple, as ``Tensor`` is: a
    frozen dataclass took 1.6 us to build, a tenth of a single-row request's whole parse."""

    id: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...] | None
    binary_outputs: bool


def parse_infer(body: bytes, header_length: str | None = None) -> InferRequest:
    """The request in ``body``; ``header_length``: the ``Inference-Header-Content-Length``
    header, when binary tensor data follows the JSON. Any problem is an ``InvalidRequest``
    naming the input and what is wrong with it."""
    json_part, binary = _split(body, header_length)
    # A small request of plain inputs is read from its bytes at once (_tensors.c): what orjson
    # and plain_tensors would give, or None, and orjson parses it.
    plain = None if binary or len(json_part) > PARSE_CHUNK_BYTES else plain_request(json_part, Tensor)
    if plain is not None:
        request_id, raw_parameters, inputs, raw_outputs = plain
    else:
        data = _parsed(json_part, header_length)
        request_id, raw_parameters, raw_outputs = data.get("id"), data.get("parameters"), data.get("outputs")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"'id' must be a string, got {_short(request_id)}")
    parameters = _parameters(raw_parameters, "the request")
    if plain is None:
        inputs = _inputs(data.get("inputs"), binary)
    check_unique_inputs(inputs)
    return InferRequest(
        id=request_id if request_id is not None else random_uuid(),
        inputs=tuple(inputs),
        outputs=_requested_outputs(raw_outputs, parameters),
        binary_outputs=parameters.get("binary_data_output") is True,
    )


def _parsed(json_part: bytes, header_length: str | None) -> dict[str, Any]:
    """The JSON object of a request."""
    # A large body's data arrays are parsed in pieces (wire.oip_pieces), to the same result.
    data = parse_in_pieces(json_part) if len(json_part) > PIECES_FROM_BYTES else None
    try:
        if data is None:
            data = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if header_length is None and "after document" in str(exc):
            hint = (
                "; binary tensor data after the JSON needs an Inference-Header-Content-Length "
                "header giving the JSON's length"
            )
        raise InvalidRequest(f"the body is not valid JSON: {exc}{hint}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object with 'inputs'")
    return data


def _inputs(raw_inputs: Any, binary: bytes) -> list[Tensor]:
    """The request's tensors, their binary data all claimed."""
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("'inputs' must be a non-empty array of input tensors")
    plain = None if binary else _plain_tensors(raw_inputs)
    if plain is not None:
        return plain
    inputs, offset = [], 0
    for index, raw in enumerate(raw_inputs):
        tensor, offset = _tensor(raw, index, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidRequest(
            f"{len(binary) - offset} bytes of binary data follow the JSON but no input's "
            "binary_data_size claims them"
        )
    return inputs


def check_unique_inputs(inputs: Sequence[Tensor]) -> None:
    """``InvalidRequest`` naming the inputs sent more than once (a few of them), in linear time:
    a request may hold thousands of inputs."""
    if len({t.name for t in inputs}) == len(inputs):
        return
    seen: set[str] = set()
    repeated = sorted({t.name for t in inputs if t.name in seen or seen.add(t.name)})  # type: ignore[func-returns-value]
    shown = ", ".join(map(echoed, repeated[:LISTED])) + (
        f" and {len(repeated) - LISTED} more" if len(repeated) > LISTED else ""
    )
    raise InvalidRequest(f"duplicate inputs: {shown}")


#: Names an error lists at most; the rest are counted.
LISTED = 10


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    length = int(header_length) if re.fullmatch(r"[0-9]{1,15}", header_length) else -1
    if not 0 <= length <= len(body):
        raise InvalidRequest(
            f"Inference-Header-Content-Length is {shortened(header_length, 40)}; it must be a "
            f"length within the body's {len(body)} bytes"
        )
    return body[:length], body[length:]


def _parameters(parameters: Any, what: str) -> Mapping[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"the parameters of {what} must be an object, got {_short(parameters)}")
    return parameters


def _plain_tensors(raw_inputs: list[Any]) -> list[Tensor] | None:
    """The inputs of the common request, one column each in JSON, checked in one pass: ``None``
    as soon as one is anything else (nested data, binary data, another datatype or shape, a bad
    element), and the careful path (``_tensor``) then reads them all and says what is wrong.

    Why native (``_tensors.c``): a single-row request of a model of 30 fields is 30 tensors, and
    checking each in Python cost three times the whole H2O parse of the same row. The tensors are
    the careful path's, element for element; tests/test_oip_wire.py holds the Python reference
    and compares the two."""
    return plain_tensors(raw_inputs, Tensor)


def _tensor(raw: Any, index: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    """Input ``index`` of the request, and the binary data's offset after it."""
    if not isinstance(raw, dict):
        raise InvalidRequest(f"input {index} must be an object, got {_short(raw)}")
    name: Any = raw.get("name")
    datatype: Any = raw.get("datatype")
    shape: Any = raw.get("shape")
    count = _checked_header(index, name, datatype, shape)
    parameters = raw.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise InvalidRequest(
            f"the parameters of {input_label(name)} must be an object, got {_short(parameters)}"
        )
    size = parameters.get("binary_data_size") if parameters else None
    if size is not None:
        if "data" in raw:
            raise InvalidRequest(f"{input_label(name)} has both 'data' and a binary_data_size")
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidRequest(
                f"{input_label(name)} has binary_data_size {_short(size)}, but "
                f"{len(binary) - offset} bytes of binary data are left after the JSON"
            )
        values = _from_binary(binary[offset : offset + size], datatype, count, name)
        return Tensor(name, datatype, tuple(shape), values), offset + size
    if "data" not in raw:
        raise InvalidRequest(f"{input_label(name)} has no 'data'")
    data = raw["data"]
    if type(data) is np.ndarray:  # a large body's floats, parsed and counted in pieces (wire.oip_pieces)
        return Tensor(name, datatype, tuple(shape), data), offset
    flat = _flattened(data, name, shape)
    if len(flat) != count:
        raise InvalidRequest(
            f"{input_label(name)} has shape {_short(shape)}, which holds {count} elements, "
            f"but its data has {len(flat)}"
        )
    return Tensor(name, datatype, tuple(shape), _from_json(flat, datatype, name)), offset


def _checked_header(index: int, name: Any, datatype: Any, shape: Any) -> int:
    """Input ``index``'s element count; ``InvalidRequest`` when its name, datatype or shape is not
    the protocol's (the same words whichever protocol carried it)."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"input {index} has no name")
    if type(datatype) is not str or datatype not in DATATYPES:
        raise InvalidRequest(
            f"{input_label(name)} has datatype {_short(datatype)}; the protocol's datatypes are "
            f"{', '.join(sorted(DATATYPES))}"
        )
    if type(shape) is list and len(shape) == 1 and type(shape[0]) is int and 0 <= shape[0] < _SIZE_LIMIT:
        return int(shape[0])  # most tabular inputs, checked without a generator
    if (
        type(shape) is not list
        or not 0 < len(shape) <= MAX_DIMENSIONS
        or not all(type(d) is int and 0 <= d < _SIZE_LIMIT for d in shape)
    ):
        raise InvalidRequest(
            f"{input_label(name)} has shape {_short(shape)}; a shape is an array of 1 to {MAX_DIMENSIONS} "
            "sizes, each a whole number below 2**64"
        )
    # At most 8 factors below 2**64: a product of at most 512 bits, however large the sizes.
    return math.prod(shape)


def binary_tensor(
    index: int, name: Any, datatype: Any, shape: Any, raw: bytes, size: str = "its binary_data_size is {}"
) -> Tensor:
    """Input ``index`` from its elements in the binary layout (fixed-size little-endian elements;
    ``BYTES`` each a 4-byte little-endian length and its UTF-8), as the binary extension and
    gRPC's ``raw_input_contents`` send them; ``size`` names the data's length in messages."""
    count = _checked_header(index, name, datatype, shape)
    return Tensor(name, datatype, tuple(shape), _from_binary(raw, datatype, count, name, size))


def listed_tensor(index: int, name: Any, datatype: Any, shape: Any, elements: Sequence[Any]) -> Tensor:
    """Input ``index`` from its elements as values (gRPC's typed ``contents``: ``str`` for
    ``BYTES``), checked against the datatype as JSON data is."""
    count = _checked_header(index, name, datatype, shape)
    if len(elements) != count:
        raise InvalidRequest(
            f"{input_label(name)} has shape {shape}, which holds {count} elements, "
            f"but its data has {len(elements)}"
        )
    return Tensor(name, datatype, tuple(shape), _from_json(list(elements), datatype, name))


#: What nests data: JSON's arrays, and the tuples a large body's rows are parsed as (wire.oip_pieces).
_NESTED = (list, tuple)


def _flattened(data: Any, name: str, shape: Sequence[int]) -> list[Any]:
    """Row-major elements of data sent flat, or nested exactly as ``shape`` says (a ragged or
    otherwise nested array is refused: its elements could not be placed)."""
    if type(data) is not list:
        return [data]
    if not data or type(data[0]) not in _NESTED:
        return data  # flat (a list further on is an element of the wrong type, refused as one)
    flat: list[Any] = []
    level: list[Any] = [data]
    for depth, size in enumerate(shape):
        last = depth == len(shape) - 1
        following: list[Any] = []
        for item in level:
            if type(item) not in _NESTED or len(item) != size:
                raise InvalidRequest(
                    f"the data of {input_label(name)} is nested, but not as its shape {_short(shape)} says "
                    f"(dimension {depth} of size {size}): send it flat, or nested as the shape is"
                )
            (flat if last else following).extend(item)
        level = following
    if any(type(v) in _NESTED for v in flat):
        raise InvalidRequest(
            f"the data of {input_label(name)} is nested deeper than its shape {_short(shape)}"
        )
    return flat


#: The Python types of JSON elements each kind of datatype takes (``None``: a missing value).
_JSON_TYPES: Mapping[str, frozenset[type]] = {
    "BYTES": frozenset({str, type(None)}),
    "BOOL": frozenset({bool, type(None)}),
    "FP": frozenset({float, int, type(None)}),
    "INT": frozenset({int, type(None)}),
}
_EXPECTED = {
    "BYTES": "BYTES (a string)",
    "BOOL": "BOOL (true or false)",
    "FP": "{} (a number)",
    "INT": "{} (an integer)",
}


#: Elements whose types are gathered per C call: about 10 ms.
TYPE_CHUNK = 256 * 1024


def _from_json(flat: list[Any], datatype: str, name: str) -> list[Any]:
    """Elements as sent in JSON, checked against the datatype; ``null`` is a missing value (a
    missing number NaN). Kept as a list: a request of few rows keeps them as cells, and a column
    of many is typed by the field it feeds (``_typed``)."""
    kind = datatype if datatype in ("BYTES", "BOOL") else "FP" if datatype.startswith("FP") else "INT"
    # C passes over a chunk each, so that a column of millions never holds the GIL for long; a
    # bad element is then looked for by position.
    found: set[type] = set()
    for start in range(0, len(flat), TYPE_CHUNK):
        found.update(map(type, flat[start : start + TYPE_CHUNK]))
    if not found <= _JSON_TYPES[kind]:
        allowed = _JSON_TYPES[kind]
        position = next(i for i, value in enumerate(flat) if type(value) not in allowed)
        raise _bad_element(name, position, flat[position], _EXPECTED[kind].format(datatype))
    if kind == "INT" and flat:
        present = [v for v in flat if v is not None] if type(None) in found else flat
        info = np.iinfo(_ELEMENTS[datatype])
        if present and (min(present) < info.min or max(present) > info.max):
            raise InvalidRequest(
                f"the data of {input_label(name)} holds an integer beyond {datatype}'s range"
            )
    if kind == "FP" and type(None) in found:
        return [math.nan if v is None else v for v in flat]
    return flat


def _from_binary(
    raw: bytes, datatype: str, count: int, name: str, size: str = "its binary_data_size is {}"
) -> np.ndarray | list[Any]:
    """``size``: how the message names the data's length, in the sender's terms."""
    if datatype == "BYTES":
        return _bytes_elements(raw, count, name)
    element = _ELEMENTS[datatype]
    if len(raw) != count * element.itemsize:
        raise InvalidRequest(
            f"{input_label(name)} declares {count} {datatype} elements "
            f"({count * element.itemsize} bytes) but {size.format(len(raw))}"
        )
    values = np.frombuffer(raw, dtype=element)
    return values.astype(element.newbyteorder("="))


def _bytes_elements(raw: bytes, count: int, name: str) -> list[Any]:
    """BYTES elements in the binary extension's layout: each a 4-byte little-endian length, then
    that many bytes of UTF-8."""
    values: list[Any] = []
    position = 0
    view = memoryview(raw)
    while position < len(raw):
        if position + 4 > len(raw) or len(values) == count:
            break
        (length,) = _LENGTH.unpack_from(view, position)
        start, position = position + 4, position + 4 + length
        if position > len(raw):
            break
        try:
            values.append(str(view[start:position], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest(f"element {len(values)} of {input_label(name)} is not UTF-8 text") from None
    if len(values) != count or position != len(raw):
        raise InvalidRequest(
            f"the binary data of {input_label(name)} does not hold exactly {count} BYTES elements, each a "
            "4-byte little-endian length and its bytes"
        )
    return values


def _requested_outputs(raw: Any, parameters: Mapping[str, Any]) -> tuple[RequestedOutput, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequest(f"'outputs' must be an array of requested outputs, got {_short(raw)}")
    requested = []
    seen: set[str] = set()
    default = parameters.get("binary_data_output", False)
    if type(default) is not bool:
        raise InvalidRequest(f"the request's binary_data_output must be true or false, got {_short(default)}")
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequest(f"requested output {index} must be an object with a 'name'")
        name = item["name"]
        if name in seen:
            raise InvalidRequest(f"output {echoed(name)} is requested twice")
        seen.add(name)
        own = _parameters(item.get("parameters"), f"output {echoed(name)}")
        binary = own.get("binary_data", default)
        if type(binary) is not bool:
            raise InvalidRequest(
                f"the binary_data of output {echoed(name)} must be true or false, got {_short(binary)}"
            )
        requested.append(RequestedOutput(name, binary))
    return tuple(requested)


def rows_of(
    request: InferRequest,
    inputs: Sequence[Field],
    missing: frozenset[str] | None,
    *,
    keep_cells: bool = False,
) -> Typed:
    """The model's input rows from the request's tensors, in either tabular spelling (the
    module's docstring), typed as the H2O path types cells. ``keep_cells``: a request of at
    most ``KEPT_ROWS`` rows keeps its elements as cells (``CellRows``), to be typed with its
    batch's, so that it merges with H2O requests of few rows as well as with its own kind."""
    if keep_cells:
        one = _one_row(request, inputs)
        if one is not None:
            return CellRows([one], tuple(inputs), missing)
    columns = _columns(request, inputs)
    rows = len(next(iter(columns.values()))) if columns else 0
    if keep_cells and rows <= KEPT_ROWS:
        lists = [_cells(columns[spec.name]) for spec in inputs]
        return CellRows(list(zip(*lists, strict=True)) if lists else [], tuple(inputs), missing)
    return Frame({spec.name: _typed(columns[spec.name], spec, missing) for spec in inputs}, rows)


def _one_row(request: InferRequest, inputs: Sequence[Field]) -> tuple[Any, ...] | None:
    """The single row of the commonest request, one JSON element per field, in the model's input
    order; ``None`` for any other request, which ``_columns`` reads (and checks) in full."""
    tensors = request.inputs
    # Each one element: its shape is [1] or [1, 1], as parse_infer checked the count against it.
    if not {tensor.shape for tensor in tensors} <= _ONE_ROW_SHAPES:
        return None
    by_name = {tensor.name: tensor.values for tensor in tensors}
    row = []
    for spec in inputs:
        values = by_name.get(spec.name)
        if type(values) is not list or len(values) != 1:
            return None  # absent, or an array (binary data): the careful path reads it
        row.append(values[0])
    return tuple(row)


_ONE_ROW_SHAPES = frozenset({(1,), (1, 1)})


def frame_of(request: InferRequest, inputs: Sequence[Field], missing: frozenset[str] | None) -> Frame:
    """The model's input columns, typed now."""
    frame = rows_of(request, inputs, missing)
    assert isinstance(frame, Frame)
    return frame


def _columns(request: InferRequest, inputs: Sequence[Field]) -> dict[str, np.ndarray | list[Any]]:
    """Each model input's elements, checked to be one column each and of one length."""
    by_name = {tensor.name: tensor for tensor in request.inputs}
    absent = [spec.name for spec in inputs if spec.name not in by_name]
    if not absent:
        columns = {spec.name: _column_of(by_name[spec.name]) for spec in inputs}
    elif len(request.inputs) == 1 and len(request.inputs[0].shape) == 2 and inputs:
        columns = _columns_of_matrix(request.inputs[0], inputs)
    else:
        shown = ", ".join(map(echoed, absent[:10]))
        if len(absent) > 10:
            shown += f" and {len(absent) - 10} more"
        raise InvalidRequest(
            f"no input for the model's fields {shown}: send one input per field, named after it, "
            f"or one [N, {len(inputs)}] tensor holding every field in the order of the model's metadata"
        )
    lengths = {name: len(values) for name, values in columns.items()}
    rows = next(iter(lengths.values()), 0)
    if any(length != rows for length in lengths.values()):
        shown = ", ".join(f"{echoed(n)}: {length}" for n, length in lengths.items())
        raise InvalidRequest(f"the inputs hold different numbers of rows ({shown})")
    return columns


def _cells(values: np.ndarray | list[Any]) -> list[Any]:
    """A column's elements as cells the H2O path types: Python values, NaN a missing number."""
    return values.tolist() if isinstance(values, np.ndarray) else values


def _column_of(tensor: Tensor) -> np.ndarray | list[Any]:
    shape = tensor.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return tensor.values
    raise InvalidRequest(
        f"input {echoed(tensor.name)} has shape {list(shape)}; an input named after a field holds "
        "one column: [N] or [N, 1]"
    )


def _columns_of_matrix(tensor: Tensor, inputs: Sequence[Field]) -> dict[str, np.ndarray | list[Any]]:
    rows, width = tensor.shape
    if width != len(inputs):
        raise InvalidRequest(
            f"input {echoed(tensor.name)} has shape {list(tensor.shape)}; the model has "
            f"{len(inputs)} fields, so a tensor of every field has shape [N, {len(inputs)}]"
        )
    values = tensor.values
    if isinstance(values, np.ndarray):
        matrix = values.reshape(rows, width)
        return {spec.name: matrix[:, j] for j, spec in enumerate(inputs)}
    return {spec.name: values[j::width] for j, spec in enumerate(inputs)}


_FLOATS = {DataType.FLOAT32: np.float32, DataType.FLOAT64: np.float64}


def _typed(values: np.ndarray | list[Any], spec: Field, missing: frozenset[str] | None) -> np.ndarray:
    """A column of tensor elements as the field's type; numbers into a float field directly,
    anything else by the H2O path's rule for a cell, which names the row on a bad one."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and spec.data_type in _FLOATS:
        with np.errstate(over="ignore"):
            return values.astype(_FLOATS[spec.data_type])
    if isinstance(values, np.ndarray):
        cells: list[Any] = values.tolist()
        if values.dtype.kind == "f":  # NaN is how a missing number came: say so to the cell rule
            cells = [None if v != v else v for v in cells]
    else:
        cells = values
    return convert_column(cells, spec, missing)


def tensor_metadata(fields: Sequence[Field]) -> list[dict[str, Any]]:
    """Model metadata's tensors: one per field, of any number of rows."""
    return [{"name": f.name, "datatype": DATATYPE_OF[f.data_type], "shape": [-1]} for f in fields]


def infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    fields: Sequence[Field],
    outputs: Mapping[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The response's bytes, and the JSON part's length when binary outputs follow it.

    ``fields``: the model's output fields, whose declared types the tensors take."""
    tensors = []
    blobs: list[bytes] = []
    for spec, binary in chosen_outputs(request, fields):
        column = outputs[spec.name]
        tensor: dict[str, Any] = {
            "name": spec.name,
            "datatype": DATATYPE_OF[spec.data_type],
            "shape": [len(column)],
        }
        if binary:
            blob = binary_output(column, spec)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_of(column, spec)
        tensors.append(tensor)
    header = orjson.dumps(
        {"model_name": model_name, "model_version": model_version, "id": request.id, "outputs": tensors},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def chosen_outputs(request: InferRequest, fields: Sequence[Field]) -> list[tuple[Field, bool]]:
    """The output fields the answer holds, in its order, each with whether it goes as binary data:
    the ones the request names, else every one."""
    wanted = request.outputs
    if wanted is None:
        return [(spec, request.binary_outputs) for spec in fields]
    return [(_field_named(fields, r.name), r.binary) for r in wanted]


def check_outputs(request: InferRequest, fields: Sequence[Field]) -> None:
    """``InvalidRequest`` before scoring when the request names an output the model lacks."""
    for requested in request.outputs or ():
        _field_named(fields, requested.name)


def _field_named(fields: Sequence[Field], name: str) -> Field:
    for spec in fields:
        if spec.name == name:
            return spec
    raise InvalidRequest(
        f"the model has no output {echoed(name)}; its outputs are {', '.join(echoed(f.name) for f in fields)}"
    )


def _json_of(column: np.ndarray, spec: Field) -> Any:
    if spec.data_type in _FLOATS:
        return np.asarray(column, dtype=_FLOATS[spec.data_type])  # NaN is written as null
    if spec.data_type in (DataType.INT32, DataType.INT64) and column.dtype.kind in "iu":
        return column
    if spec.data_type is DataType.BOOL and column.dtype.kind == "b":
        return column
    return [_text(value) for value in column.tolist()]


def _text(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return cell_of(value)


def binary_output(column: np.ndarray, spec: Field) -> bytes:
    """An output column in the binary layout, in the field's declared datatype."""
    datatype = DATATYPE_OF[spec.data_type]
    if datatype != "BYTES":
        return _fixed_size(column, spec, datatype).tobytes()
    parts = []
    for value in column.tolist():
        text = b"" if value is None else str(_text(value)).encode()
        parts.append(_LENGTH.pack(len(text)) + text)
    return b"".join(parts)


def _fixed_size(column: np.ndarray, spec: Field, datatype: str) -> np.ndarray:
    """An output column as the binary layout's elements of ``datatype``; ``ModelError`` (500) when
    the model's values do not fit it (a missing integer or boolean, an integer out of range, a
    value of another kind), which the layout cannot carry and a cast would silently change."""
    element = _ELEMENTS[datatype]
    if element.kind == "f":
        try:
            return np.ascontiguousarray(column, dtype=element)
        except (TypeError, ValueError):
            raise _unfit(spec, datatype, "values that are not numbers") from None
    if column.dtype.kind == "O":
        if any(v is None for v in column.tolist()):
            raise _unfit(spec, datatype, "missing values")
        try:
            column = np.asarray(column.tolist())
        except (TypeError, ValueError, OverflowError):
            raise _unfit(spec, datatype, "values of mixed kinds") from None
    if column.dtype.kind == "f":
        if np.isnan(column).any():
            raise _unfit(spec, datatype, "missing values")
        if element.kind != "b" and not np.all(column == np.floor(column)):
            raise _unfit(spec, datatype, "fractions")
    if element.kind in "iu" and column.size:
        info = np.iinfo(element)
        if column.dtype.kind not in "iufb" or column.min() < info.min or column.max() > info.max:
            raise _unfit(spec, datatype, f"values beyond {datatype}'s range")
    return np.ascontiguousarray(column, dtype=element)


def _unfit(spec: Field, datatype: str, what: str) -> ModelError:
    return ModelError(  # the answer is being shaped: the runtime that made it is not known here
        f"output {echoed(spec.name)} holds {what}, which {datatype} elements in binary cannot carry; "
        "ask for it in JSON (binary_data false), where a missing value is null",
        runtime="scorer_core",
    )


def _bad_element(name: str, position: int, value: Any, expected: str) -> InvalidRequest:
    return InvalidRequest(f"element {position} of {input_label(name)} is {echoed(value)}, not {expected}")


def input_label(name: str) -> str:
    """An input as messages name it; built only for a message, as most requests need none."""
    return f"input {echoed(name)}"


def _short(value: Any) -> str:
    return shortened(repr(value), 100)
