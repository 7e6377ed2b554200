"""Conversion of request cells (strings, or JSON numbers, booleans and nulls) into typed columns.

The H2O contract sends every cell as a string; the runtime converts each column to the type the
model's schema declares, so no plugin parses strings itself. Errors name the row and the field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from scorer_core.errors import InvalidRequest
from scorer_core.frame import Frame
from scorer_core.schema import DataType, Field
from scorer_core.wire.deadline import checkpoint

__all__ = [
    "DEFAULT_MISSING_VALUES",
    "STRING_MISSING_VALUES",
    "build_frame",
    "convert_column",
    "echoed",
    "format_column",
    "format_scalar",
    "is_missing",
    "missing_tokens",
    "shortened",
    "texts_by_codes",
]

#: Cells read as missing in non-string columns unless the runtime declares its own list.
#: They are the tokens H2O's scorers treat as NA; none of them could parse as a number anyway.
DEFAULT_MISSING_VALUES = frozenset({"", "NA", "N/A", "NaN", "nan", "None", "null", "?", "unknown"})
#: Cells read as missing in string columns by default: only the empty string, so that text such
#: as "unknown" reaches a text model unchanged.
STRING_MISSING_VALUES = frozenset({""})

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
_NUMPY_TYPES: dict[DataType, type[np.generic]] = {
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.FLOAT32: np.float32,
    DataType.FLOAT64: np.float64,
}
#: Rows or cells handled per C call (a matrix, a column parse): short enough that the GIL is not
#: held for long, so that the event loop and the probes are answered while a large request is
#: converted.
ROWS_PER_CALL = 32 * 1024


def build_frame(
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    inputs: Sequence[Field],
    missing_values: frozenset[str] | None = None,
) -> Frame:
    """Typed columns for the model's ``inputs``, taken by name from a request's rows.

    ``rows`` must already have one cell per name in ``fields`` (see ``validation``).
    ``missing_values`` replaces both default missing-value lists when the model declares its own.
    """
    position = {name: i for i, name in enumerate(fields)}
    matrix = _float_matrix(rows, inputs, missing_values)
    if matrix is not None:
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, as on the column path
            return Frame(
                {
                    spec.name: matrix[:, position[spec.name]].astype(_NUMPY_TYPES[spec.data_type])
                    for spec in inputs
                },
                len(rows),
            )
    columns: dict[str, np.ndarray] = {}
    for spec in inputs:
        # One C loop per column: zip(*rows) made an iterator per row, a million short-lived
        # objects whose collections, each walking every row, held the GIL for 80 ms at a time.
        checkpoint()
        values = list(map(itemgetter(position[spec.name]), rows))
        columns[spec.name] = convert_column(values, spec, missing_values)
    return Frame(columns, len(rows))


def _float_matrix(
    rows: Sequence[Sequence[Any]], inputs: Sequence[Field], missing_values: frozenset[str] | None
) -> np.ndarray | None:
    """All cells at once, when every model input is a float and every cell parses as ``float``.

    ``float`` is the per-cell rule of the column path too, so the result is the same; any other
    cell (missing tokens, text in an extra field) raises and the column path decides.
    """
    if not rows or missing_values is not None:
        return None
    if not all(spec.data_type in (DataType.FLOAT32, DataType.FLOAT64) for spec in inputs):
        return None
    parts = []
    for start in range(0, len(rows), ROWS_PER_CALL):
        checkpoint()
        try:
            with np.errstate(over="ignore"):
                parts.append(np.array(rows[start : start + ROWS_PER_CALL], dtype=np.float64))
        except (ValueError, TypeError):
            return None
    if any(part.ndim != 2 for part in parts) or len({part.shape[1] for part in parts}) != 1:
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def missing_tokens(data_type: DataType, missing_values: frozenset[str] | None) -> frozenset[str]:
    """The cells read as missing in a column of ``data_type``: the model's own list when it
    declares one, else the defaults (only the empty string in a string column)."""
    if missing_values is not None:
        return missing_values
    return STRING_MISSING_VALUES if data_type is DataType.STR else DEFAULT_MISSING_VALUES


def texts_by_codes(texts: Sequence[str], codes: np.ndarray, missing: frozenset[str]) -> np.ndarray:
    """A string column from its distinct texts and each cell's code into them, typed as
    ``convert_column`` types the same cells (a missing-value token None): one object per
    distinct text, however many cells hold it."""
    distinct = np.empty(len(texts), dtype=object)
    distinct[:] = [None if text in missing else text for text in texts]
    return distinct[codes]  # type: ignore[no-any-return]


def convert_column(
    values: Sequence[Any], spec: Field, missing_values: frozenset[str] | None = None
) -> np.ndarray:
    """One column of cells converted to the numpy dtype ``spec.data_type`` maps to."""
    data_type = spec.data_type
    missing = missing_tokens(data_type, missing_values)
    if data_type is DataType.STR:
        return _to_str(values, spec, missing)
    if data_type in (DataType.FLOAT32, DataType.FLOAT64):
        return _to_float(values, spec, missing)
    if data_type in (DataType.INT32, DataType.INT64):
        return _to_int(values, spec, missing)
    if data_type is DataType.BOOL:
        return _to_bool(values, spec, missing)
    return _to_time(values, spec, missing)


#: Characters of a bad cell an error text quotes: enough to recognise it, while a cell of megabytes
#: would make a 400 of megabytes (and a log line of them, where a model quotes it).
ECHO_CHARS = 100


def shortened(text: str, limit: int, length: int | None = None) -> str:
    """``text``, or its first ``limit`` characters and how long it was (``length`` when the text
    stands for something of another length, as a repr for its string)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) if length is None else length} characters)"


def echoed(value: Any) -> str:
    """A cell as an error text quotes it: its repr (quotes, escaped control characters), cut
    after ``ECHO_CHARS`` characters."""
    return shortened(repr(value), ECHO_CHARS, len(value) if isinstance(value, str) else None)


def _fail(row: int, spec: Field, value: Any, expected: str = "") -> InvalidRequest:
    what = expected or spec.data_type.value
    return InvalidRequest(f"Row {row}, field '{spec.name}': cannot parse {echoed(value)} as {what}")


def is_missing(value: Any, missing: frozenset[str]) -> bool:
    """Whether a cell of a number, boolean or time column is missing: null, NaN, or one of the
    ``missing`` tokens (with or without blanks around it)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value in missing or value.strip() in missing
    return isinstance(value, float) and math.isnan(value)


def _to_float(values: Sequence[Any], spec: Field, missing: frozenset[str]) -> np.ndarray:
    target = _NUMPY_TYPES[spec.data_type]
    fast = _fast_numeric(values, target)
    if fast is not None:
        return fast
    out = np.empty(len(values), dtype=target)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, as on the fast paths
        _fill_floats(out, values, spec, missing)
    return out


def _fill_floats(out: np.ndarray, values: Sequence[Any], spec: Field, missing: frozenset[str]) -> None:
    for row, value in enumerate(values):
        if is_missing(value, missing):
            out[row] = np.nan
        elif isinstance(value, bool):
            out[row] = float(value)
        elif isinstance(value, str) and value.strip().lower() in ("true", "false"):
            # H2O's Java scorer reads booleans sent to a numeric column as 1 and 0.
            out[row] = 1.0 if value.strip().lower() == "true" else 0.0
        else:
            try:
                out[row] = float(value)
            except (TypeError, ValueError):
                raise _fail(row, spec, value) from None


def _to_int(values: Sequence[Any], spec: Field, missing: frozenset[str]) -> np.ndarray:
    target = _NUMPY_TYPES[spec.data_type]
    info = np.iinfo(np.int32 if spec.data_type is DataType.INT32 else np.int64)
    fast = _fast_numeric(values, np.int64)
    if fast is not None:
        out_of_range = np.flatnonzero((fast < info.min) | (fast > info.max))
        if out_of_range.size:
            raise _out_of_range(int(out_of_range[0]), spec, values)
        return fast.astype(target, copy=False)
    parsed: list[int | None] = [
        None if is_missing(value, missing) else _parse_integer(row, spec, value)
        for row, value in enumerate(values)
    ]
    if any(v is None for v in parsed):
        # As pandas does: an integer column holding a missing value becomes float64 with NaN.
        return np.array([math.nan if v is None else float(v) for v in parsed], dtype=np.float64)
    for row, number in enumerate(parsed):
        if not info.min <= number <= info.max:  # type: ignore[operator]
            raise _out_of_range(row, spec, values)
    return np.array(parsed, dtype=target)


def _out_of_range(row: int, spec: Field, values: Sequence[Any]) -> InvalidRequest:
    return InvalidRequest(
        f"Row {row}, field '{spec.name}': {echoed(values[row])} is out of range for {spec.data_type.value}"
    )


def _parse_integer(row: int, spec: Field, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lower() in ("true", "false"):
        return 1 if text.lower() == "true" else 0
    if not isinstance(text, float):  # int() of a float truncates it: 3.5 would be scored as 3
        try:
            return int(text)
        except (TypeError, ValueError, OverflowError):
            pass
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise _fail(row, spec, value) from None
    if math.isinf(number):
        raise _fail(row, spec, value)
    if not number.is_integer():
        raise _fail(row, spec, value, f"{spec.data_type.value} (it has a fractional part)")
    return int(number)


def _json_numbers(values: Sequence[Any]) -> np.ndarray | None:
    """Parse a column of numeric strings as JSON arrays: about 4x faster than ``float`` per cell.

    Only a result of exactly one plain number per cell is used; anything else (missing values,
    NaN, text, a cell that smuggles in a comma) returns None and the careful path runs. Parsed
    ``ROWS_PER_CALL`` cells at a time, so that no call holds the GIL for long.
    """
    parts = []
    for start in range(0, len(values), ROWS_PER_CALL):
        chunk = values[start : start + ROWS_PER_CALL]
        try:
            parsed = orjson.loads("[" + ",".join(chunk) + "]")
        except (TypeError, orjson.JSONDecodeError):
            return None
        if len(parsed) != len(chunk):
            return None
        try:
            raw = np.array(parsed)
        except ValueError:
            return None
        if raw.ndim != 1 or raw.dtype.kind not in "if":
            return None
        parts.append(raw)
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else None


def _fast_numeric(values: Sequence[Any], target: type[np.generic]) -> np.ndarray | None:
    """A vectorised parse when every cell is a plain number or numeric string."""
    raw = _json_numbers(values) if values and type(values[0]) is str else None
    if raw is not None and np.issubdtype(target, np.floating):
        if _negative_zero(values, raw):
            return None  # JSON reads "-0" as the integer 0; float("-0") keeps the sign
        if raw.dtype.kind in "iu":
            # As float() then the column's type, like the careful path: an integer beyond 2**53
            # is rounded to a double first, so a Float32 column rounds it alike on every path.
            raw = raw.astype(np.float64)
    if raw is None:
        try:
            raw = _as_array(values)
        except ValueError:
            return None
    kind = raw.dtype.kind
    if kind not in "Uifb" or raw.shape != (len(values),):  # a cell holding an array is no number
        return None
    if (
        kind == "f"
        and np.issubdtype(target, np.integer)
        # Only whole numbers that a float holds exactly: a larger one ("99999999999999999999")
        # would cast to garbage, so the careful path parses it and reports it out of range.
        and not (np.all(np.isfinite(raw)) and np.all(raw == np.floor(raw)) and np.all(np.abs(raw) < 2**53))
    ):
        return None
    try:
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, as float() would
            return raw.astype(target)
    except (ValueError, OverflowError):
        return None


#: Cells made into an array per numpy call: a few milliseconds.
ARRAY_CHUNK = 128 * 1024


def _as_array(values: Sequence[Any]) -> np.ndarray:
    """``np.asarray(values)``, a chunk per call, so that a column of millions of cells never holds
    the GIL for long (one call over a million floats took 40-90 ms). The chunks' arrays are joined
    only when numpy chose one dtype for them all, which is then the dtype it chooses for the whole;
    otherwise (ints in one chunk, floats in another) the whole is made in one call, as before."""
    if len(values) <= ARRAY_CHUNK:
        return np.asarray(values)
    chunks = [np.asarray(values[start : start + ARRAY_CHUNK]) for start in range(0, len(values), ARRAY_CHUNK)]
    dtype = chunks[0].dtype
    if dtype.kind in "fib" and all(c.dtype == dtype and c.ndim == 1 for c in chunks):
        return np.concatenate(chunks)
    del chunks
    return np.asarray(values)


def _negative_zero(texts: Sequence[Any], parsed: np.ndarray) -> bool:
    """Whether a cell parsed as a zero without its sign (JSON's integer ``-0``) was negative."""
    unsigned = np.flatnonzero((parsed == 0) & ~np.signbit(parsed))
    return any(str(texts[int(i)]).lstrip().startswith("-") for i in unsigned)


def _to_bool(values: Sequence[Any], spec: Field, missing: frozenset[str]) -> np.ndarray:
    parsed: list[bool | None] = []
    for row, value in enumerate(values):
        if is_missing(value, missing):
            parsed.append(None)
        elif isinstance(value, bool):
            parsed.append(value)
        elif isinstance(value, (int, float)) and value in (0, 1):
            parsed.append(bool(value))
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            parsed.append(value.strip().lower() in _TRUE)
        else:
            raise _fail(row, spec, value, "Bool (expected true or false)")
    if any(v is None for v in parsed):
        # As pandas does: a boolean column holding a missing value becomes object with None.
        return np.array(parsed, dtype=object)
    return np.array(parsed, dtype=bool)


def _to_str(values: Sequence[Any], spec: Field, missing: frozenset[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str) and value in missing):
            out[row] = None
        elif isinstance(value, str):
            out[row] = value
        elif isinstance(value, (dict, list)):
            raise _fail(row, spec, value, "Str (expected a string)")
        else:
            out[row] = format_scalar(value)
    return out


def _to_time(values: Sequence[Any], spec: Field, missing: frozenset[str]) -> np.ndarray:
    out = np.empty(len(values), dtype="datetime64[ns]")
    for row, value in enumerate(values):
        if is_missing(value, missing):
            out[row] = np.datetime64("NaT")
            continue
        try:
            parsed = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise _fail(
                row,
                spec,
                value,
                "Time64 (expected ISO 8601, e.g. 2018-01-01 or 2018-01-01T12:30:00)",
            ) from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
        out[row] = np.datetime64(parsed, "ns")
    return out


#: Cells converted per numpy call: ``astype(str)`` holds the GIL for a whole call, a second for a
#: million floats, which would stall every other request; this many take a few milliseconds.
FORMAT_CHUNK_CELLS = 32 * 1024


#: Up to this many cells of integers or doubles are written one by one in Python: numpy's
#: ``astype(str)`` costs 1.7 us for one integer and 4.4 us for one double (with its check for
#: NaN and the infinities), about what a single row's answer spends on the rest of its writing.
FEW_CELLS = 16


def format_column(column: Iterable[Any]) -> list[str]:
    """Output cells as strings, the way H2O's Java scorer writes them (NaN, Infinity, true)."""
    array = np.asarray(column)
    if array.ndim == 1 and len(array) <= FEW_CELLS:
        if array.dtype.kind in "iu":
            return list(map(str, array.tolist()))
        if array.dtype == _DOUBLE:  # a double's repr is numpy's shortest form: a test holds it
            return list(map(_double_text, array.tolist()))
    if array.ndim == 1 and len(array) > FORMAT_CHUNK_CELLS and array.dtype.kind in "fiu":
        cells: list[str] = []
        for start in range(0, len(array), FORMAT_CHUNK_CELLS):
            cells.extend(_format_array(array[start : start + FORMAT_CHUNK_CELLS]))
        return cells
    return _format_array(array)


_DOUBLE = np.dtype(np.float64)


def _double_text(value: float) -> str:
    """A double as the contract's cell: in full (its repr), NaN and the infinities as H2O
    spells them."""
    if value - value == 0.0:  # finite
        return repr(value)
    return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"


def _format_array(array: np.ndarray) -> list[str]:
    kind = array.dtype.kind
    if kind == "f":
        text = array.astype(str)
        if not np.all(np.isfinite(array)):
            text[np.isnan(array)] = "NaN"
            text[np.isposinf(array)] = "Infinity"
            text[np.isneginf(array)] = "-Infinity"
        return list(text.tolist())
    if kind in "iu":
        return list(array.astype(str).tolist())
    if kind == "b":
        return ["true" if v else "false" for v in array.tolist()]
    if kind == "M":
        return ["" if np.isnat(v) else str(v.astype("datetime64[ms]")) for v in array]
    return [format_scalar(v) for v in array.tolist()]


def format_scalar(value: Any) -> str:
    """One value as the contract's string cell (``None`` empty, floats in full, NaN and the
    infinities as H2O spells them)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _double_text(value)
    if isinstance(value, np.generic):
        return format_column([value])[0]
    return str(value)
