"""The ``rows`` array of a large body: found in the bytes, and cut into pieces of whole rows.

Why: orjson, and every ``bytes`` method, holds the GIL for a whole call. One ``orjson.loads`` over
a 29 MB body of a million string rows takes about a second, during which no other request, and
no health probe, is answered. Parsed a few hundred KiB at a time, each call takes milliseconds.

Both parsers (``wire.fastpath`` and ``wire.contract``) use this, and both must give exactly what
one parse of the whole body gives, so nothing here trusts a guess: every cut is proven by the
parses that follow it, and when a proof fails the caller parses the whole body as before.

- **Finding the array.** ``"rows": [`` is looked for after ``{`` or ``,``, so that its quote is a
  key's opening quote, never an escaped one inside a string. A match may still be a key of a
  nested object (``{"extra": {"rows": [...]}}``), so the array is replaced by a sentinel (random
  per call, so that no body can spell it) and the envelope parsed: only when the top-level
  ``rows`` is the sentinel was the right array cut out.
  The array's end is the first ``]]`` after which the envelope parses; a ``]]`` inside a string
  or a nested array leaves the envelope broken, which orjson rejects, and the next is tried.
  A later ``]]`` may take whole members with it (``"rows": [..]], "x": [[..]]``) and still leave
  an envelope that parses, so the rows' bytes must prove to be one array: the pieces' parses
  do (a member's colon is invalid inside any piece), and the native decoder stops at the
  array's own end.
- **Cutting it.** Cuts are made after a ``]`` followed by ``,``. A cut inside a string leaves that
  string unterminated in the piece before it; one inside a nested array leaves that piece
  unbalanced: orjson rejects both, so pieces that all parse were cut between rows. A piece
  that parses to no rows means a doubled comma, which one parse would reject. A trailing comma
  cannot reach a piece: the array's end is a ``]`` then blanks then ``]``, so its inside ends
  with a ``]`` or a blank, never with a comma.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, TypeGuard

import orjson

from scorer_core.wire.collector import collection_paused
from scorer_core.wire.deadline import checkpoint

__all__ = [
    "PARSE_CHUNK_BYTES",
    "RowsSplit",
    "envelope",
    "parse_pieces",
    "row_pieces",
    "rows_start",
    "split_rows",
]

#: Bytes of rows checked and parsed per C call: a few milliseconds each.
PARSE_CHUNK_BYTES = 256 * 1024
#: ``"rows": [`` as a key: after ``{`` or ``,`` (and blanks), so the quote cannot be escaped.
_ROWS_KEY = re.compile(rb'[{,]\s*"rows"\s*:\s*\[')
#: Stands for the rows array in the envelope, with a random part made per call (``envelope``),
#: so that no body can spell it: a later duplicate "rows" holding it would win the parse.
_SENTINEL_PREFIX = "\x00scorer-rows-"
#: How many ``]]`` are tried as the array's end before the body is parsed whole.
_END_CANDIDATES = 4
#: The end of an array of arrays, blanks allowed (pretty-printed JSON has a newline between).
_ARRAY_END = re.compile(rb"\]\s*\]")
#: Where a piece may end: a ``]`` and the comma after it.
_CUT = re.compile(rb"\]\s*,")


class RowsSplit:
    """A body cut in two: the envelope (every member but ``rows``, parsed) and the rows array's
    bytes. ``envelope["rows"]`` is ``[]``, ready for the pydantic envelope model."""

    __slots__ = ("envelope", "rows")

    def __init__(self, envelope: dict[str, Any], rows: bytes) -> None:
        self.envelope = envelope
        self.rows = rows


def split_rows(body: bytes) -> RowsSplit | None:
    """The envelope and the top-level rows array, or None when that cannot be shown."""
    start = rows_start(body)
    if start is None:
        return None
    ends = _ARRAY_END.finditer(body, start)
    for _ in range(_END_CANDIDATES):
        found = next(ends, None)
        if found is None:
            return None
        parsed = envelope(body, start, found.end())
        if parsed is not None:
            return RowsSplit(parsed, body[start : found.end()])
        # a "]]" inside a string or a nested array, or a nested "rows": try the next one
    return None


def rows_start(body: bytes) -> int | None:
    """Where the first ``"rows": [`` key's array starts (its ``[``), if the body has one."""
    match = _ROWS_KEY.search(body)
    if match is None:
        return None
    return match.end() - 1


def envelope(body: bytes, start: int, end: int) -> dict[str, Any] | None:
    """The body parsed with ``body[start:end]`` taken out, when that was the top-level rows array's
    place (then ``"rows"`` is ``[]``); None when the rest does not parse around it or it was not."""
    sentinel = _SENTINEL_PREFIX + secrets.token_hex(16)
    try:
        parsed = orjson.loads(body[:start] + orjson.dumps(sentinel) + body[end:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("rows") != sentinel:
        return None  # a nested "rows", or a later top-level one that would win
    parsed["rows"] = []
    return parsed


def row_pieces(rows: bytes) -> list[bytes]:
    """The rows array as ``[...]`` arrays of whole rows (if the parses that follow succeed),
    each about ``PARSE_CHUNK_BYTES``; cut after a ``]`` followed by ``,``, the comma dropped."""
    if len(rows) <= PARSE_CHUNK_BYTES:
        return [rows]
    inner = memoryview(rows)[1:-1]
    pieces, start, size = [], 0, len(inner)
    while start < size:
        stop, after = _cut_after(rows, start + PARSE_CHUNK_BYTES)
        pieces.append(b"[" + inner[start:stop] + b"]")
        start = after
    return pieces


def _cut_after(rows: bytes, offset: int) -> tuple[int, int]:
    """Where a piece of the array's inside that may end after ``offset`` ends (just after a
    ``]`` that a comma follows, or at the end), and where the next begins (after the comma;
    past the end when there is none). Offsets are in the inside: the array without its
    brackets, which starts at ``rows[1]``."""
    inside = len(rows) - 2
    found = _CUT.search(rows, offset + 1, inside + 1) if offset < inside else None
    if found is None:
        return inside, inside + 1
    return found.start(), found.end() - 1  # rows[i] is the inside's byte at i - 1


def parse_pieces(rows: bytes) -> list[tuple[Any, ...]] | None:
    """The rows array parsed piece by piece, each row a tuple of its cells: what
    ``orjson.loads(rows)`` gives, but with no long C call. None when that cannot be shown (the
    caller then parses the whole body, for the right answer or error).

    A piece that does not parse is grown to the next cut, a few times: a cut that fell inside a
    string (``"a],b"``) or a nested array is then passed.

    Tuples, because the garbage collector stops tracking a tuple of strings and numbers, and a
    million tracked row lists made each full collection hold the GIL for over 100 ms.
    """
    if len(rows) <= PARSE_CHUNK_BYTES:
        whole = _parse_piece(rows)
        return list(map(tuple, whole)) if _all_rows(whole) else None
    inner = memoryview(rows)[1:-1]
    parsed: list[tuple[Any, ...]] = []
    start, size = 0, len(inner)
    while start < size:
        checkpoint()
        stop, after = _cut_after(rows, start + PARSE_CHUNK_BYTES)
        for _ in range(_GROWTHS):
            with collection_paused():  # see wire.collector
                part = _parse_piece(b"[" + inner[start:stop] + b"]")
                if part is not None:
                    if not _all_rows(part):
                        return None
                    parsed.extend(map(tuple, part))
                    del part
                    break
            if stop == size:
                return None
            stop, after = _cut_after(rows, after)
        else:
            return None
        start = after
    return parsed


#: How many times a piece that does not parse is grown to the next cut.
_GROWTHS = 16


def _parse_piece(piece: bytes) -> list[Any] | None:
    try:
        part = orjson.loads(piece)
    except orjson.JSONDecodeError:
        return None
    return part  # type: ignore[no-any-return]


def _all_rows(part: list[Any] | None) -> TypeGuard[list[Any]]:
    """Whether a parsed piece holds rows, every one an array: an empty piece means a doubled
    comma (invalid in one array), and a row that is not an array gets its error from one parse
    of the whole body."""
    return part is not None and bool(part) and all(type(row) is list for row in part)
