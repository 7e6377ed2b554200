"""A large Open Inference Protocol body, parsed a piece at a time: what one parse gives, without
one long call.

Why: orjson holds the GIL for a whole call, and one ``orjson.loads`` over a 54 MB body of
tensors held every other request, and every health probe, for about 430 ms. Almost all of such a
body is its inputs' ``data`` arrays, so those are parsed a few hundred KiB at a time, and the rest
of the body once, with the arrays taken out.

Nothing here trusts a guess; as for H2O's rows (``wire.rows_array``), the parses prove the cuts,
and when a proof fails the caller parses the whole body, for the same answer or error:

- **Finding the arrays** (``data_arrays``, native, without the GIL): the arrays that are the
  value of a member spelt ``"data"``, with the offsets of the commas directly inside them.
- **The rest of the body.** Each array is replaced by a string made for this call (random, so
  that no body can spell it) and the rest parsed. Each string must then be found as the
  ``data`` of one input: an array that was the ``data`` of something else (a parameter), or that
  a later duplicate ``data`` member hid, makes the body go whole.
- **Each array's pieces** are parsed as arrays of their own (``[`` + the elements between two
  cuts + ``]``). A cut inside a string or a nested array leaves a piece that does not parse, and
  an empty piece means a doubled, leading or trailing comma: both go whole. Pieces that all parse
  to elements make one array, which the replaced string stood for in a body that parsed: so the
  whole body parses, to this.

Known limit: an array is cut only between its own elements, so one element larger than a piece
(a single row of a million columns, sent nested as ``[[...]]``; one huge string) is parsed in one
call: 51 ms for a 12 MB row. Tabular requests have many small rows.

Two differences, each read by ``wire.oip`` as what it stands for:

- **Numbers come as an array.** The data of an ``FP32`` or ``FP64`` input whose elements are all
  written as floats (``5.1``, ``1e3``: no integer, no ``null``, no other type), flat or nested
  exactly as its shape ``[N]`` or ``[N, F]`` says, comes as one flat float64 array, filled a piece
  at a time. Elements so written are Python floats after one parse too, and a float64 array holds
  them exactly (``FP32`` data is kept as doubles after one parse as well); anything else in any
  piece (an integer, which a string field would read as ``5`` rather than ``5.0``; a ragged row)
  makes that array go as lists, below. Why: a million rows of four numbers as lists are a million
  tuples and four million floats, which then had to be flattened, typed, sliced into columns and
  made into arrays, with calls holding the GIL for 13-33 ms each; the health probes of a server
  parsing one waited over 100 ms.
- **Rows of other nested data** (an ``[N, F]`` tensor sent as N arrays) come as tuples, not lists,
  for the collector's sake.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import numpy as np
import orjson

from scorer_core.wire.collector import collection_paused
from scorer_core.wire.deadline import checkpoint
from scorer_core.wire.native import data_arrays
from scorer_core.wire.rows_array import PARSE_CHUNK_BYTES

__all__ = ["parse_in_pieces"]

#: Stands for a data array in the rest of the body; a random part and the array's index follow.
_MARK_PREFIX = "\x00scorer-data-"


def parse_in_pieces(body: bytes, piece_bytes: int = PARSE_CHUNK_BYTES) -> dict[str, Any] | None:
    """``orjson.loads(body)`` for a request whose inputs' data arrays are large, parsed in calls
    of about ``piece_bytes`` each; None when that cannot be shown to give the same (the caller
    then parses the whole body). Past the request's deadline it stops between pieces
    (``wire.deadline``)."""
    found = data_arrays(body, piece_bytes, piece_bytes)
    if not found:
        return None
    marks = f"{_MARK_PREFIX}{secrets.token_hex(16)}-"
    rest: list[bytes] = []
    taken = 0
    for index, (start, end, _) in enumerate(found):
        rest += (body[taken:start], orjson.dumps(f"{marks}{index}"))
        taken = end
    rest.append(body[taken:])
    try:
        parsed = orjson.loads(b"".join(rest))
    except orjson.JSONDecodeError:
        return None
    inputs = parsed.get("inputs") if type(parsed) is dict else None
    if type(inputs) is not list:
        return None
    placed = set()
    for raw in inputs:
        mark = raw.get("data") if type(raw) is dict else None
        if type(mark) is not str or not mark.startswith(marks):
            continue
        index = int(mark[len(marks) :])
        data = _array_in_pieces(body, *found[index], _float_layout(raw))
        if data is None or index in placed:
            return None
        raw["data"] = data
        placed.add(index)
    return parsed if len(placed) == len(found) else None


def _float_layout(raw: dict[str, Any]) -> tuple[int, int | None] | None:
    """The element count, and the row width if it has rows, of an input whose data may come as
    floats (the module's docstring): a floating-point datatype and a shape ``[N]`` or ``[N, F]``."""
    shape = raw.get("shape")
    if raw.get("datatype") not in ("FP32", "FP64") or type(shape) is not list or len(shape) not in (1, 2):
        return None
    if not all(type(size) is int and 0 < size < 2**40 for size in shape):
        return None
    width = shape[1] if len(shape) == 2 else None
    return shape[0] * (width or 1), width


class _Floats:
    """An array's elements while they are all floats: one float64 array, filled piece by piece."""

    def __init__(self, count: int, width: int | None) -> None:
        self.values = np.empty(count, dtype=np.float64)
        self.filled = 0
        self.width = width

    def take(self, piece: list[Any], nested: bool) -> bool:
        """Whether the piece's elements are all floats (in rows of the width, when nested), and
        now kept; False leaves what was kept as it was."""
        if nested:
            if self.width is None or not all(type(row) is list and len(row) == self.width for row in piece):
                return False
            piece = list(itertools.chain.from_iterable(piece))
        if self.filled + len(piece) > len(self.values) or set(map(type, piece)) != {float}:
            return False
        self.values[self.filled : self.filled + len(piece)] = piece
        self.filled += len(piece)
        return True

    def elements(self, nested: bool) -> list[Any]:
        """The floats kept so far, as the general way below gives them (rows as tuples), so that a
        late element of another type costs no second parse of the pieces before it."""
        kept: list[Any] = self.values[: self.filled].tolist()
        if not nested or self.width is None:  # nested without a width: nothing was kept
            return kept
        width = self.width
        return [tuple(kept[i : i + width]) for i in range(0, len(kept), width)]


def _array_in_pieces(
    body: bytes, start: int, end: int, cuts: tuple[int, ...], layout: tuple[int, int | None] | None
) -> np.ndarray | list[Any] | None:
    """The array ``body[start:end]``, parsed between its cuts: as float64 when it is ``layout``'s
    count of floats (the module's docstring), else as a list; None when a piece does not parse,
    or holds no element where cut."""
    view = memoryview(body)
    bounds = (start, *cuts, end - 1)  # its "[", the commas cut at, its "]"
    # A JSON float takes three bytes and a comma at least: a shape claiming more elements than the
    # array can hold is refused by the careful path, before anything its size is allocated.
    floats = _Floats(*layout) if layout is not None and layout[0] <= (end - start + 1) // 4 else None
    elements: list[Any] = []
    nested = False
    for number, (after, before) in enumerate(itertools.pairwise(bounds)):
        checkpoint()
        with collection_paused():  # see wire.collector
            try:
                piece = orjson.loads(b"".join((b"[", view[after + 1 : before], b"]")))
            except orjson.JSONDecodeError:
                return None
            if not piece:
                return None if cuts else []  # uncut, the array itself is empty
            if number == 0:
                nested = type(piece[0]) is list
            if floats is not None:
                if floats.take(piece, nested):
                    continue
                elements, floats = floats.elements(nested), None
            if nested and all(type(e) is list for e in piece):
                # Rows of nested data as tuples, which the collector stops tracking once they hold
                # only numbers and strings: a million tracked row lists made each full collection
                # hold the GIL for over 50 ms (wire.collector). Flat data (its first element no
                # array) keeps any array in it as a list, for its error to quote as sent.
                piece = list(map(tuple, piece))
            elements += piece
            del piece
    if floats is None:
        return elements
    # Fewer floats than the shape says: as a list, for the careful path's error.
    return floats.values if floats.filled == len(floats.values) else floats.elements(nested)
