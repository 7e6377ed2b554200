"""The native modules' number reader (``wire/_decimal.h``) gives every number the double that
``float()`` gives it, bit for bit, or leaves it to a reader that does.

Both native modules include it: the rows decoder (H2O's quoted cells, ``quoted_numbers``) and the
Open Inference Protocol's request reader (``plain_request``). Each test sends its numbers through
both, and compares with Python's own correctly rounded reader.
"""

from __future__ import annotations

import math
import random
import re
import struct
from pathlib import Path

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer_core.wire.native import plain_request, quoted_numbers
from scorer_core.wire.oip import Tensor

HEADER = Path(__file__).resolve().parents[1] / "scorer_core" / "wire" / "_decimal.h"


def power_of_five_table() -> list[int]:
    """For each q in [-342, 308], the 128 most significant bits of 5^q (for q < 0, of 2^b / 5^-q
    rounded up, b chosen so that it has 128 bits where it matters): the table Eisel and Lemire's
    algorithm multiplies by, as fast_float generates it."""
    table = []
    for q in range(-342, 0):
        power = 5**-q
        z = power.bit_length()  # 2**z > 5**-q, which is no power of two
        if q >= -27:
            table.append(2 ** (z + 127) // power + 1)
        else:
            value = 2 ** (2 * z + 128) // power + 1
            while value >= 1 << 128:
                value //= 2
            table.append(value)
    for q in range(309):
        power = 5**q
        while power < 1 << 127:
            power *= 2
        while power >= 1 << 128:
            power //= 2
        table.append(power)
    return table


def test_the_header_holds_the_table_of_powers_of_five_entry_by_entry():
    text = HEADER.read_text()
    body = text[text.index("POWERS_OF_FIVE[") : text.index("};", text.index("POWERS_OF_FIVE["))]
    halves = [int(h, 16) for h in re.findall(r"0x([0-9a-f]{16})", body)]
    written = [high << 64 | low for high, low in zip(halves[::2], halves[1::2], strict=True)]
    expected = power_of_five_table()
    assert len(written) == len(expected) == 651
    wrong = [q for q, (w, e) in enumerate(zip(written, expected, strict=True), start=-342) if w != e]
    assert not wrong, f"wrong entries for 5^q, q in {wrong[:10]}"


def natively_read(texts: list[str]) -> tuple[list[float], dict[str, float]]:
    """The texts read by the rows decoder (as quoted cells), and those that are a finite float in
    JSON (a fraction or an exponent) by the OIP reader, which leaves anything else to orjson."""
    decoded = quoted_numbers(orjson.dumps([texts]), 0)
    assert decoded is not None, texts
    as_cells = np.frombuffer(decoded[0], dtype=np.float64).tolist()
    floats = [t for t in texts if re.search("[.eE]", t) and math.isfinite(float(t))]
    if not floats:
        return as_cells, {}
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [%d], "data": [%s]}]}' % (
        len(floats),
        ",".join(floats).encode(),
    )
    request = plain_request(body, Tensor)
    assert request is not None, body[:200]
    return as_cells, dict(zip(floats, request[2][0].values, strict=True))


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def assert_read_as_float_reads(texts: list[str]) -> None:
    as_cells, as_numbers = natively_read(texts)
    for text, cell in zip(texts, as_cells, strict=True):
        assert bits(cell) == bits(float(text)), f"{text}: cell {cell!r}, float() {float(text)!r}"
    for text, number in as_numbers.items():
        assert bits(number) == bits(float(text)), f"{text}: number {number!r}, float() {float(text)!r}"


def json_number(digits: str, point: int, exponent: int, negative: bool) -> str:
    """digits with a decimal point after ``point`` of them (none if at the end) and an exponent."""
    text = digits if point >= len(digits) else f"{digits[:point] or '0'}.{digits[point:]}"
    return ("-" if negative else "") + text + (f"e{exponent}" if exponent else "")


def test_every_power_of_ten_the_table_covers_with_digits_of_every_length():
    """A sweep of each decimal exponent the algorithm takes (and just outside them), each with
    mantissas of 1 to 20 digits, so that every entry of the table is used."""
    rng = random.Random(20261207)
    texts = []
    for exponent in range(-345, 312):
        for length in (1, 2, 15, 16, 17, 18, 19, 19, 19, 20):
            digits = str(rng.randrange(10 ** (length - 1), 10**length))
            texts.append(json_number(digits, len(digits), exponent - len(digits) + 1, rng.random() < 0.3))
    assert_read_as_float_reads(texts)


def test_computed_doubles_read_back_as_themselves():
    """What repr() and %.17g write for doubles of every magnitude, normal and subnormal."""
    rng = random.Random(7)
    texts = []
    for _ in range(20000):
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(63)))[0]
        if math.isfinite(value):
            texts += [repr(value), f"{value:.17g}", f"{value:.16e}"]
    assert_read_as_float_reads([t.replace("inf", "1e999") for t in texts])


def test_halfway_cases_round_to_even():
    """Integers exactly between two doubles (2**53 + 1, ...) and their neighbours, with and without
    a decimal exponent: the tie rounds to the even double, the neighbours to the nearer one."""
    texts = []
    for power in range(53, 64):
        for odd in range(1, 40, 2):
            for delta in (-1, 0, 1):
                tie = (1 << power) + odd * (1 << (power - 53)) + delta * (power > 53)
                if len(str(tie)) <= 19:
                    texts += [str(tie), f"{tie}e0", f"{str(tie)[:-1]}.{str(tie)[-1]}e1"]
    texts += ["9007199254740993", "9007199254740995", "18014398509481986", "18014398509481990"]
    assert_read_as_float_reads(texts)


def test_edges_of_the_double_range():
    texts = [
        "2.2250738585072014e-308",  # the smallest normal
        "2.2250738585072011e-308",  # the largest subnormal, below it
        "4.9406564584124654e-324",  # the smallest subnormal
        "2.4703282292062328e-324",  # halfway to zero
        "1.7976931348623157e308",  # the largest double
        "1.7976931348623158e308",  # rounds to it
        "1.7976931348623159e308",  # rounds to infinity
        "1e-400",
        "1e400",
        "0e999999",
        "-0.0",
        "-0",
        "0.000000000000000000000000000001",
        "123456789012345678901234567890",
        "0.1",
        "0.3",
        "1e23",
        "8.98846567431158e307",
        "9007199254740992.000000000001",
    ]
    assert_read_as_float_reads(texts)


numbers = st.builds(
    json_number,
    digits=st.integers(0, 10**20).map(str),
    point=st.integers(0, 22),
    exponent=st.integers(-360, 330),
    negative=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(numbers, min_size=1, max_size=50))
def test_any_json_number_reads_as_float_reads_it(texts):
    assert_read_as_float_reads(texts)
