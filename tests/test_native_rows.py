"""The native decoder of quoted numeric rows (``scorer_core/wire/_rows.c``) against a reference.

The reference says what the decoder must accept (rows of equal width, each cell a string that
is exactly one JSON number, no escapes) and the value of each cell (Python's ``float``, which
the general path uses). Everything else must be refused (None), so that the Python paths decide.
Values are compared bit for bit, so ``-0.0`` and the last bit of rounding count.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scorer_core.wire._rows import quoted_numbers

JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def reference(text: str) -> tuple[bytes, int, int] | None:
    if "\\" in text:
        return None  # an escape inside a string: refused, whatever it decodes to
    try:
        rows = json.loads(text, parse_constant=lambda name: {"constant": name})
    except ValueError:
        return None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and r for r in rows):
        return None
    if len({len(r) for r in rows}) != 1:
        return None
    if not all(isinstance(c, str) and JSON_NUMBER.fullmatch(c) for r in rows for c in r):
        return None
    values = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    return values.tobytes(), len(rows), len(rows[0])


valid_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(JSON_NUMBER.fullmatch),
    st.integers(-(10**40), 10**40).map(str),
    st.from_regex(JSON_NUMBER, fullmatch=True),
    st.sampled_from(["-0", "0", "0.0", "-0.0", "1e22", "1e23", "9007199254740993", "123456789012345.6",
                     "1e-400", "1e400", "-1E+5", "0.1", "2.2250738585072011e-308", "4.9e-324", "1.7976931348623157e308",
                     # 17 digits: read as a double first, then scaled, each rounds off by one bit
                     "64708321257442331e-9", "10303515748823385e22", "34932996677935535e1", "80572271384302296e-21"]),
)  # fmt: skip
invalid_numbers = st.sampled_from(["01", ".5", "5.", "+5", " 5", "5 ", "NaN", "Infinity", "1e", "--1", "0x10", "", "1.2.3", "\\u0031"])
cells = st.one_of(valid_numbers.map(lambda n: f'"{n}"'), valid_numbers.map(lambda n: f'"{n}"'), invalid_numbers.map(lambda n: f'"{n}"'), valid_numbers, st.just("null"), st.just('["1"]'))  # fmt: skip
blank = st.sampled_from(["", "", " ", "\n", "\t\r "])


@st.composite
def rows_text(draw: st.DrawFn) -> str:
    width = draw(st.integers(1, 4))
    rows: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        n = width if draw(st.integers(0, 9)) else draw(st.integers(0, 5))  # sometimes ragged or empty
        inner = draw(blank).join(c + draw(blank) + "," for c in draw(st.lists(cells, min_size=n, max_size=n)))
        rows.append("[" + draw(blank) + inner.rstrip(",").rstrip() + draw(blank) + "]")
    text = draw(blank) + "[" + draw(blank) + ("," + draw(blank)).join(rows) + draw(blank) + "]" + draw(blank)
    cut = draw(st.sampled_from([None] * 8 + ["truncate", "trailing comma"]))
    if cut == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif cut == "trailing comma" and text.rstrip().endswith("]]"):
        text = text.rstrip()[:-1] + ",]"
    return text


@settings(max_examples=1500, deadline=None)
@given(text=rows_text())
@example(text='[["1.5", "2"], ["-0", "1e3"]]')
@example(text='[["0.1", "1e400"], ["-0", "123456789012345678901234567890"]]')
@example(text='[["1"], ["2", "3"]]')
@example(text='[["64708321257442331e-9", "3.4932996677935535e16"]]')
@example(text="[]")
@example(text="[[]]")
def test_the_native_decoder_accepts_exactly_the_reference_shape_with_its_values(text: str) -> None:
    expected = reference(text)
    data = text.encode()
    got = quoted_numbers(data)
    # The decoder stops at the array's closing bracket and says where: only blanks may follow.
    accepted = got is not None and not data[got[3] :].strip()
    assert accepted == (expected is not None), (text, got, expected)
    if got is not None and expected is not None:
        assert data[got[3] - 1 : got[3]] == b"]"
        assert got[1:3] == expected[1:]
        assert got[0] == expected[0], (np.frombuffer(got[0]), np.frombuffer(expected[0]))


def test_any_bytes_like_body_is_read_from_an_offset_to_the_arrays_end() -> None:
    one_row = (np.array([1.0, 2.0]).tobytes(), 1, 2, 12)
    assert quoted_numbers(b'[["1", "2"]]') == one_row
    assert quoted_numbers(bytearray(b'[["1", "2"]]')) == one_row  # type: ignore[arg-type]
    assert quoted_numbers(memoryview(b'[["1", "2"]]')) == one_row  # type: ignore[arg-type]
    body = b'{"rows": [["1", "2"]], "fields": ["a", "b"]}'
    assert quoted_numbers(body, 9) == (one_row[0], 1, 2, 21) and body[20:21] == b"]"
    with pytest.raises(ValueError, match="outside"):
        quoted_numbers(body, len(body) + 1)
