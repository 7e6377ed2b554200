"""A faster parse for large all-numeric score requests, with the general path as its fallback.

The contract sends every cell as a JSON string, so a 10,000-row request of 30 numbers is 300,000
Python strings to allocate and then parse one by one: most of a large request's time. Two ways
round it, tried in turn:

- the native decoder (``_rows.c``) reads the rows array from its start to its end, and when
  every cell is one quoted JSON number, writes them straight into doubles with the GIL released
  (3.3x the next way on 10,000 rows of 30 cells);
- else, when every cell of ``rows`` is a quoted number, removing the quotes from the ``rows``
  array gives plain JSON numbers that orjson parses straight into floats, about twice as fast
  end to end as the general path.

It is only a fast path: whenever the result cannot be shown to equal what the general path would
produce (a non-numeric cell, a copied field, a ragged row, an integer column holding a fraction),
it returns None and the request is parsed the usual way, with the usual errors.

Removing quotes is only safe when each quoted string held one number: a cell ``"5.1,3.5"`` would
otherwise become two cells, and ``"1""2"`` or ``"1"2`` one. So the rows must hold nothing but
number characters and JSON punctuation, no empty string, no quote with a number character on
both sides, and exactly two quotes per parsed cell (every cell quoted, none split or merged);
anything else goes the general way. Each check is one pass in C over the bytes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson

from scorer_core.frame import Frame
from scorer_core.schema import DataType, ModelSchema
from scorer_core.wire.contract import ScoreRequest
from scorer_core.wire.deadline import checkpoint
from scorer_core.wire.rows_array import envelope, row_pieces, rows_start, split_rows

try:
    from scorer_core.wire._rows import quoted_numbers
except ImportError as error:  # a checkout used without installing it: say how, not just "no module"
    raise ImportError(
        "scorer_core's native row decoder (scorer_core/wire/_rows.c) is not built: install the "
        "package (`make install`, or `pip install -e .` with gcc and Python's headers) to build it"
    ) from error

__all__ = ["FAST_PATH_MIN_BYTES", "numeric_frame"]

#: Smaller bodies parse fast enough the usual way.
FAST_PATH_MIN_BYTES = 64 * 1024
#: Everything an all-quoted numeric rows array may hold; any other byte means the general path.
_ROWS_BYTES = b'0123456789.eE+- \t\n\r,[]"'
#: Number characters all become ``d``, so that ``d"d`` finds a quote between two of them.
_AS_DIGITS = bytes.maketrans(b"0123456789.eE+-", b"d" * 15)
#: ``-0`` written as an integer (no fraction, no exponent after it).
_INTEGER_MINUS_ZERO = re.compile(rb"-0(?![0-9.eE])")
_FLOATS = {DataType.FLOAT32: np.float32, DataType.FLOAT64: np.float64}
_INTS = {DataType.INT32: np.int32, DataType.INT64: np.int64}


def _decode_natively(body: bytes) -> tuple[dict[str, Any], tuple[np.ndarray, int]] | None:
    """The envelope and the rows, decoded by the native decoder (``_rows.c``) from where the
    rows array starts: every cell one quoted JSON number with no blanks inside its quotes,
    straight into doubles, with the GIL released. None for any other body, which
    ``_parse_rows`` then tries."""
    start = rows_start(body)
    if start is None:
        return None
    checkpoint()  # one C call: 60 MB take about 0.2 s, and none of them holds the GIL
    decoded = quoted_numbers(body, start)
    if decoded is None:
        return None
    data, count, width, end = decoded
    parsed = envelope(body, start, end)  # the decoded array must be the top-level rows
    if parsed is None:
        return None
    return parsed, (np.frombuffer(data, dtype=np.float64).reshape(count, width), 2 * count * width)


def _parse_rows(rows: bytes) -> tuple[np.ndarray, int] | None:
    """The quoted numeric rows as a float64 matrix and the number of quotes they held; None when
    a byte, an empty string or a quote between two number characters means the general path."""
    matrices, quotes = [], 0
    for piece in row_pieces(rows):
        checkpoint()
        if piece.translate(None, _ROWS_BYTES) or b'""' in piece or b'd"d' in piece.translate(_AS_DIGITS):
            return None
        if _INTEGER_MINUS_ZERO.search(piece):
            return None  # orjson reads -0 as the integer 0; the general path keeps the sign
        quotes += piece.count(b'"')
        matrix = np.array(orjson.loads(piece.replace(b'"', b"")), dtype=np.float64)
        if matrix.ndim != 2:
            return None
        matrices.append(matrix)
    if len({m.shape[1] for m in matrices}) != 1:
        return None
    return (matrices[0] if len(matrices) == 1 else np.concatenate(matrices)), quotes


def numeric_frame(body: bytes, schema: ModelSchema) -> tuple[ScoreRequest, Frame] | None:
    """The parsed envelope and the typed frame, or None to take the general path."""
    inputs = schema.inputs
    if len(body) < FAST_PATH_MIN_BYTES or not all(
        f.data_type in _FLOATS or f.data_type in _INTS for f in inputs
    ):
        return None
    found: tuple[dict[str, Any], tuple[np.ndarray, int] | None] | None
    try:
        found = _decode_natively(body)
        if found is None:
            split = split_rows(body)
            if split is None:
                return None
            found = split.envelope, _parse_rows(split.rows)
        data, parsed = found
        request = ScoreRequest.model_validate(data)
    except (ValueError, TypeError):  # orjson.JSONDecodeError and pydantic errors are ValueErrors
        return None
    if parsed is None:
        return None
    matrix, quotes = parsed
    fields = request.fields
    if (
        request.includeFieldsInOutput
        or matrix.ndim != 2
        or matrix.shape[1] != len(fields)
        or quotes != 2 * matrix.size
        or len(set(fields)) != len(fields)
        or np.isnan(matrix).any()
    ):
        return None
    position = {name: i for i, name in enumerate(fields)}
    columns: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in position:
            return None
        column = matrix[:, position[spec.name]]
        if spec.data_type in _FLOATS:
            with np.errstate(over="ignore"):  # beyond float32's range is inf, as on the general path
                columns[spec.name] = column.astype(_FLOATS[spec.data_type])
            continue
        target = _INTS[spec.data_type]
        info = np.iinfo(np.int32 if spec.data_type is DataType.INT32 else np.int64)
        if not (np.all(column == np.floor(column)) and column.min() >= info.min and column.max() <= info.max):
            return None
        if np.abs(column).max() >= 2**53:  # beyond float64's exact integers: parse the strings
            return None
        columns[spec.name] = column.astype(target)
    return request, Frame(columns, matrix.shape[0])
