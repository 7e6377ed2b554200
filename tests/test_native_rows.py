"""The native decoder of quoted rows (``scorer_core/wire/_rows.c``) against a reference.

The reference says what the decoder must accept (rows of equal width, each cell a string with no
escape or control character; for ``quoted_numbers``, each exactly one JSON number) and the value
of each cell (Python's ``float``, which the general path uses, or NaN for a text that is no
number) and its text. Everything else must be refused (None), so that the Python paths decide.
Values are compared bit for bit, so ``-0.0`` and the last bit of rounding count.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scorer_core.wire._rows import distinct_texts, quoted_cells, quoted_numbers, string_rows

JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def cells_reference(text: str) -> tuple[np.ndarray, list[list[str]]] | None:
    """What ``quoted_cells`` must give for ``text``: each cell's double (NaN for a text that is
    no JSON number) and its text; None for what it must refuse."""
    if "\\" in text:
        return None  # an escape inside a string: refused, whatever it decodes to
    try:  # strict, as json.loads is by default: a control character inside a string is refused
        rows = json.loads(text, parse_constant=lambda name: {"constant": name})
    except ValueError:
        return None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and r for r in rows):
        return None
    if len({len(r) for r in rows}) != 1 or not all(isinstance(c, str) for r in rows for c in r):
        return None
    values = np.array([[float(c) if JSON_NUMBER.fullmatch(c) else np.nan for c in r] for r in rows])
    return values, rows


def reference(text: str) -> tuple[bytes, int, int] | None:
    """What ``quoted_numbers`` must give: ``cells_reference``'s values when every cell is a
    number."""
    found = cells_reference(text)
    if found is None or np.isnan(found[0]).any():
        return None
    values = found[0]
    return values.tobytes(), values.shape[0], values.shape[1]


valid_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(JSON_NUMBER.fullmatch),
    st.integers(-(10**40), 10**40).map(str),
    st.from_regex(JSON_NUMBER, fullmatch=True),
    st.sampled_from(["-0", "0", "0.0", "-0.0", "1e22", "1e23", "9007199254740993", "123456789012345.6",
                     "1e-400", "1e400", "-1E+5", "0.1", "2.2250738585072011e-308", "4.9e-324", "1.7976931348623157e308",
                     # 17 digits: read as a double first, then scaled, each rounds off by one bit
                     "64708321257442331e-9", "10303515748823385e22", "34932996677935535e1", "80572271384302296e-21"]),
)  # fmt: skip
invalid_numbers = st.sampled_from(
    [
        "01",
        ".5",
        "5.",
        "+5",
        " 5",
        "5 ",
        "NaN",
        "Infinity",
        "1e",
        "--1",
        "0x10",
        "",
        "1.2.3",
        "\\u0031",
        "Zürich",
        "東京",
        "a b",
        '\\"',
        "tab\there",
        "\x7f",
        "NA",
    ]
)
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


@settings(max_examples=1500, deadline=None)
@given(text=rows_text())
@example(text='[["Zürich", "2"], ["", "1e3"]]')
@example(text='[["a\\"b"]]')
def test_the_cells_decoder_keeps_every_cells_text_and_the_numbers_values(text: str) -> None:
    expected = cells_reference(text)
    data = text.encode()
    got = quoted_cells(data)
    accepted = got is not None and not data[got[4] :].strip()
    assert accepted == (expected is not None), (text, got, expected)
    if got is None or expected is None:
        return
    numbers, spans, rows, width, _end, non_ascii = got
    values, texts = expected
    assert (rows, width) == values.shape
    assert np.frombuffer(numbers).tobytes() == values.tobytes()  # bit for bit, NaN included
    offsets = np.frombuffer(spans, dtype=np.int64).reshape(rows, width, 2)
    assert [[data[o : o + n].decode() for o, n in row] for row in offsets] == texts
    assert non_ascii == any(ord(ch) > 127 for row in texts for ch in "".join(row))
    for column in range(width):
        codes, distinct = distinct_texts(data, spans, width, column)
        assert distinct == list(dict.fromkeys(row[column] for row in texts))
        assert [distinct[c] for c in np.frombuffer(codes, dtype=np.int32)] == [row[column] for row in texts]


def test_distinct_texts_refuses_spans_outside_the_data_and_answers_none_for_text_not_utf8() -> None:
    _numbers, spans, *_ = quoted_cells(b'[["ab", "c\xff"]]')
    assert distinct_texts(b'[["ab", "c\xff"]]', spans, 2, 0) == (np.zeros(1, np.int32).tobytes(), ["ab"])
    assert distinct_texts(b'[["ab", "c\xff"]]', spans, 2, 1) is None
    with pytest.raises(ValueError, match="outside the data"):
        distinct_texts(b"[[", spans, 2, 0)
    with pytest.raises(ValueError, match="whole rows"):
        distinct_texts(b'[["ab", "c"]]', spans, 3, 0)
    with pytest.raises(ValueError, match="whole rows"):
        distinct_texts(b'[["ab", "c"]]', spans, 2, 2)


def test_a_column_of_many_distinct_texts_grows_the_table() -> None:
    text = "[" + ",".join(f'["v{i % 3000}"]' for i in range(9000)) + "]"
    _numbers, spans, *_ = quoted_cells(text.encode())
    codes, distinct = distinct_texts(text.encode(), spans, 1, 0)
    assert distinct == [f"v{i}" for i in range(3000)]
    assert np.array_equal(np.frombuffer(codes, dtype=np.int32), np.arange(9000) % 3000)


def test_any_bytes_like_body_is_read_from_an_offset_to_the_arrays_end() -> None:
    one_row = (np.array([1.0, 2.0]).tobytes(), 1, 2, 12)
    assert quoted_numbers(b'[["1", "2"]]') == one_row
    assert quoted_numbers(bytearray(b'[["1", "2"]]')) == one_row  # type: ignore[arg-type]
    assert quoted_numbers(memoryview(b'[["1", "2"]]')) == one_row  # type: ignore[arg-type]
    body = b'{"rows": [["1", "2"]], "fields": ["a", "b"]}'
    assert quoted_numbers(body, 9) == (one_row[0], 1, 2, 21) and body[20:21] == b"]"
    with pytest.raises(ValueError, match="outside"):
        quoted_numbers(body, len(body) + 1)


def colliding_texts(count: int, bits: int) -> list[bytes]:
    """Texts of six letters whose span hash (FNV-1a then murmur3's finaliser, as in _rows.c)
    agree in their low ``bits`` bits: one slot of a table of 2**bits, as a hostile body could
    choose them."""
    rng = np.random.default_rng(7)
    found: dict[bytes, None] = {}
    with np.errstate(over="ignore"):
        while len(found) < count:
            letters = rng.integers(97, 123, size=(1 << 20, 6), dtype=np.uint64)
            h = np.full(len(letters), 14695981039346656037, dtype=np.uint64)
            for j in range(6):
                h = (h ^ letters[:, j]) * np.uint64(1099511628211)
            for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB34A0E6C2DE3):
                h ^= h >> np.uint64(33)
                h *= np.uint64(multiplier)
            h ^= h >> np.uint64(33)
            for row in letters[(h & np.uint64((1 << bits) - 1)) == 0]:
                found[bytes(row.astype(np.uint8))] = None
    return list(found)[:count]


def test_texts_made_to_collide_give_up_at_once_and_the_same_count_of_others_does_not() -> None:
    # 1,024 distinct texts in one slot of the 2,048-slot table would cost about ten million
    # probes (and a million rows, time in the square of them): the probes are bounded instead.
    colliding = colliding_texts(1024, 11)
    body = b"[" + b",".join(b'["' + text + b'"]' for text in colliding * 20) + b"]"
    _numbers, spans, *_ = quoted_cells(body)
    assert distinct_texts(body, spans, 1, 0) is None, "the general path types these"
    others = [f"{i:06d}".encode() for i in range(1024)]
    body = b"[" + b",".join(b'["' + text + b'"]' for text in others * 20) + b"]"
    _numbers, spans, *_ = quoted_cells(body)
    found = distinct_texts(body, spans, 1, 0)
    assert found is not None and found[1] == [text.decode() for text in others]


def test_arguments_no_body_could_give_are_refused_not_trusted() -> None:
    with pytest.raises(ValueError, match="whole rows"):
        distinct_texts(b"", b"", 2**60, 0)  # a width whose row size overflows
    huge = np.array([2**62, 2**62], dtype=np.int64).tobytes()  # offset + length overflows
    with pytest.raises(ValueError, match="outside the data"):
        distinct_texts(b"abc", huge, 1, 0)
    with pytest.raises(OverflowError):
        string_rows([["a"]], 0, 2**70)
