"""A faster parse for large score requests of number and string cells, with the general path as
its fallback.

The contract sends every cell as a JSON string, so a 10,000-row request of 14 cells is 140,000
Python strings to allocate, then to parse or copy one by one: most of a large request's time, all
of it holding the GIL. The native decoder (``_rows.c``) reads the rows array from its start to
its end instead, with the GIL released: each cell that is exactly one JSON number becomes a
double where it lies, and every cell's text is kept as a span of the body. Then, per model input:

- a number column is the doubles, cast to its type; a cell that was no number must be one of
  the column's missing-value tokens (NaN, and an integer column holding one becomes float64, as
  on the general path);
- a string column is made from its distinct texts, each made once (a categorical column of
  10,000 cells has a handful), then picked by code: one ``str`` per distinct value, not per cell.

An all-number model first asks the decoder for numbers only (``quoted_numbers``): about 10%
faster, and it stops at the first cell that is no number, when the spans are asked for.

It is only a fast path: whenever the result cannot be shown to equal what the general path would
produce (an escape or a control character in a cell, a cell that is no string, a ragged row, a
copied field, a text that is neither a number nor a missing-value token in a number column, an
integer column holding a fraction or a number beyond 2**53, a boolean or time input), it returns
None and the request is parsed the usual way, with the usual errors. ``tests/test_fastpath*``
hold the agreement.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from scorer_core.frame import Frame
from scorer_core.schema import DataType, Field, ModelSchema
from scorer_core.wire.cells import is_missing, missing_tokens, texts_by_codes
from scorer_core.wire.contract import ScoreRequest
from scorer_core.wire.deadline import checkpoint
from scorer_core.wire.native import distinct_texts, quoted_cells, quoted_numbers
from scorer_core.wire.rows_array import envelope, rows_start

__all__ = ["FAST_PATH_MIN_BYTES", "native_frame"]

#: Smaller bodies parse fast enough the usual way.
FAST_PATH_MIN_BYTES = 64 * 1024
_FLOATS = {DataType.FLOAT32: np.float32, DataType.FLOAT64: np.float64}
_INTS: dict[DataType, type[np.int32] | type[np.int64]] = {DataType.INT32: np.int32, DataType.INT64: np.int64}
#: Integers a double holds exactly; beyond them the general path parses the text itself.
_EXACT_INTEGERS = 2.0**53


class _Decoded:
    """The rows array as the native decoder left it: doubles, and the cells' spans when asked."""

    __slots__ = ("body", "numbers", "spans", "width")

    def __init__(self, body: bytes, numbers: np.ndarray, spans: bytes | None, width: int) -> None:
        self.body = body
        self.numbers = numbers
        self.spans = spans
        self.width = width


def _decode(body: bytes, numbers_only: bool) -> tuple[dict[str, Any], _Decoded] | None:
    """The envelope and the decoded rows, or None for a body the decoder does not take."""
    start = rows_start(body)
    if start is None:
        return None
    checkpoint()  # one C call: 60 MB take about 0.2 s, and none of them holds the GIL
    spans: bytes | None = None
    found = quoted_numbers(body, start) if numbers_only else None
    if found is not None:
        data, count, width, end = found
    else:  # some cell is no number (a missing value, or text): every cell's span is needed
        cells = quoted_cells(body, start)
        if cells is None:
            return None
        data, spans, count, width, end, non_ascii = cells
        if non_ascii:
            try:
                body[start:end].decode("utf-8")  # the general path's parse refuses a body that is not
            except UnicodeDecodeError:
                return None
    parsed = envelope(body, start, end)  # the decoded array must be the top-level rows
    if parsed is None:
        return None
    numbers = np.frombuffer(data, dtype=np.float64).reshape(count, width)
    return parsed, _Decoded(body, numbers, spans, width)


def _texts(decoded: _Decoded, column: int, missing: frozenset[str]) -> np.ndarray | None:
    """A string column: each distinct text made once, a missing-value token as None."""
    assert decoded.spans is not None
    found = distinct_texts(decoded.body, decoded.spans, decoded.width, column)
    if found is None:
        return None
    codes, texts = found
    return texts_by_codes(texts, np.frombuffer(codes, dtype=np.int32), missing)


def _gaps_are_missing(decoded: _Decoded, column: int, gaps: np.ndarray, missing: frozenset[str]) -> bool:
    """Whether every cell at ``gaps`` (no number) is one of the missing-value tokens."""
    if decoded.spans is None:
        return False
    spans = np.frombuffer(decoded.spans, dtype=np.int64).reshape(-1, decoded.width, 2)[gaps, column]
    found = distinct_texts(decoded.body, spans.tobytes(), 1, 0)
    return found is not None and all(is_missing(text, missing) for text in found[1])


@functools.lru_cache(maxsize=16)
def _has_number_token(missing: frozenset[str]) -> bool:
    """Whether a missing-value token parses as a number (``float``'s rules or numpy's)."""
    for token in missing:
        try:
            float(token)
            return True
        except ValueError:
            pass
        try:
            np.array([token]).astype(np.float64)
            return True
        except ValueError:
            pass
    return False


def _numbers(
    decoded: _Decoded, column: int, spec: Field, missing: frozenset[str], own_missing: bool
) -> np.ndarray | None:
    """A number column, as the general path types it; None where only it can say.

    ``own_missing``: the model declared its missing-value tokens. With a cell that is no number,
    the general path reads the column whole with numpy when every cell parses (a token such as
    "inf" then is a number, not missing), else cell by cell (a number among the tokens, "-1",
    then is missing too): a list with a token that parses as a number leaves such a column to
    it. The default tokens parse as nothing but NaN.
    """
    values = decoded.numbers[:, column]
    gaps = np.flatnonzero(np.isnan(values))
    if gaps.size and (
        (own_missing and _has_number_token(missing)) or not _gaps_are_missing(decoded, column, gaps, missing)
    ):
        return None
    if spec.data_type in _FLOATS:
        with np.errstate(over="ignore"):  # beyond float32's range is inf, as on the general path
            return values.astype(_FLOATS[spec.data_type])
    present = values if not gaps.size else np.delete(values, gaps)
    if present.size and not (
        np.all(np.abs(present) < _EXACT_INTEGERS) and np.all(present == np.floor(present))
    ):
        return None  # a fraction, or beyond a double's exact integers: the general path decides
    if gaps.size:
        # As pandas does: an integer column with a missing cell is float64 (and "-0" is an
        # integer, so its zero has no sign: adding 0.0 clears it).
        return values + 0.0
    info = np.iinfo(_INTS[spec.data_type])
    if present.size and (present.min() < info.min or present.max() > info.max):
        return None  # the general path's 400 names the row
    return values.astype(_INTS[spec.data_type])


def native_frame(
    body: bytes, schema: ModelSchema, missing_values: frozenset[str] | None = None
) -> tuple[ScoreRequest, Frame] | None:
    """The parsed envelope and the typed frame, or None to take the general path.

    ``missing_values``: the model's own missing-value tokens, as ``build_frame`` takes them.
    """
    inputs = schema.inputs
    if len(body) < FAST_PATH_MIN_BYTES or not all(
        f.data_type in _FLOATS or f.data_type in _INTS or f.data_type is DataType.STR for f in inputs
    ):
        return None
    numbers_only = all(f.data_type is not DataType.STR for f in inputs)
    try:
        found = _decode(body, numbers_only)
        if found is None:
            return None
        data, decoded = found
        request = ScoreRequest.model_validate(data)
    except (ValueError, TypeError):  # orjson.JSONDecodeError and pydantic errors are ValueErrors
        return None
    fields = request.fields
    if request.includeFieldsInOutput or decoded.width != len(fields) or len(set(fields)) != len(fields):
        return None
    position = {name: i for i, name in enumerate(fields)}
    columns: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in position:
            return None
        column = position[spec.name]
        missing = missing_tokens(spec.data_type, missing_values)
        if spec.data_type is DataType.STR:
            typed = _texts(decoded, column, missing)
        else:
            typed = _numbers(decoded, column, spec, missing, missing_values is not None)
        if typed is None:
            return None
        columns[spec.name] = typed
    return request, Frame(columns, decoded.numbers.shape[0])
