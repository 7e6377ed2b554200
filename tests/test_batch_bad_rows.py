"""Rows ``scorer batch`` cannot read: a field named twice is refused as the HTTP API refuses it;
a cell of ten million characters, bytes that are not UTF-8, a JSON value nested 500 deep or a
row with a cell too many is one row's fault: one line naming its row and line, exit status 1,
and with ``--on-error skip`` the row goes to the side file and every other row is scored."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.jobs.job import BatchOptions, run_batch_job
from scorer_core.tables.rows import BLOCK_BYTES, MAX_ROW_BYTES
from tests.conftest import probe_model_in_process, scorer_batch

SPEC = {"inputs": [["x", "Float64"], ["s", "Str"]], "outputs": [["y", "Float64"]]}


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return probe_model_in_process(tmp_path, monkeypatch, SPEC)


def read_ys(path: Path) -> list[str]:
    return [line.strip('"') for line in path.read_text().splitlines()[1:]]


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_field_named_twice_is_refused_as_the_http_api_refuses_it(model, tmp_path, kind):
    source = tmp_path / f"in.{kind}"
    if kind == "csv":
        source.write_text("x,s,x\n1,a,5\n")
    else:
        columns = [pa.array(["1"]), pa.array(["a"]), pa.array(["5"])]
        pq.write_table(pa.Table.from_arrays(columns, names=["x", "s", "x"]), source)
    result = scorer_batch(model, source, tmp_path / "out.csv")
    assert result.returncode == 2, result.stderr
    assert "scorer: error: the input's header has duplicate fields: 'x'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


def x(row: int) -> int:
    """Row ``row``'s x: never 13, on which the probe model raises."""
    return row + 14


def y(row: int) -> str:
    return f"{2.0 * x(row):.1f}"


def bad_rows(tmp_path: Path, case: str) -> tuple[Path, int, int, str]:
    """An input of good rows (``x(row)``) with one bad row, the last but one: the file, the bad
    row's number (counting from 0), its line, and what the error says of it."""
    if case == "a cell of 10,000,000 characters":
        path = tmp_path / "in.csv"
        path.write_text(f"x,s\n{x(0)},a\n{x(1)}," + "z" * 10_000_000 + f"\n{x(2)},c\n")
        return path, 1, 3, f"is longer than {MAX_ROW_BYTES >> 20} MiB"
    if case == "bytes that are not UTF-8 after 5 MB":
        path = tmp_path / "in.csv"
        good = b"".join(b"%d,%s\n" % (x(i), b"a" * 20) for i in range(250_000))  # 6.7 MB
        path.write_bytes(b"x,s\n" + good + b"%d,\xff\xfe\n%d,b\n" % (x(250_000), x(250_001)))
        return path, 250_000, 250_002, "is not UTF-8 (byte 0xff)"
    if case == "a JSON value nested 500 deep":
        path = tmp_path / "in.jsonl"
        nested = "[" * 500 + "]" * 500
        lines = [
            f'{{"x": {x(0)}, "s": "a"}}',
            "",
            f'{{"x": {x(1)}, "s": {nested}}}',
            f'{{"x": {x(2)}, "s": "c"}}',
        ]
        path.write_text("\n".join(lines) + "\n")
        return path, 1, 3, "holds a value nested too deeply to be a cell"
    if case == "a CSV row with a cell too many":
        path = tmp_path / "in.csv"
        path.write_text(f"x,s\n{x(0)},a\n{x(1)},b,extra\n{x(2)},c\n")
        return path, 1, 3, "has 3 cells where the header has 2"
    if case == "a JSON line that is not an object":
        path = tmp_path / "in.jsonl"
        path.write_text(f'{{"x": {x(0)}, "s": "a"}}\n[{x(1)}, "b"]\n{{"x": {x(2)}, "s": "c"}}\n')
        return path, 1, 2, "is not a JSON object"
    raise AssertionError(case)


CASES = [
    "a cell of 10,000,000 characters",
    "bytes that are not UTF-8 after 5 MB",
    "a JSON value nested 500 deep",
    "a CSV row with a cell too many",
    "a JSON line that is not an object",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_row_that_cannot_be_read_fails_the_job_on_one_line_or_is_skipped(model, tmp_path, case):
    source, row, line, reason = bad_rows(tmp_path, case)
    output = tmp_path / "out.csv"
    failed = scorer_batch(model, source, output)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    [said] = [text for text in failed.stderr.splitlines() if "error" in text]
    assert said.startswith(
        f"scorer: error: row {row} (counting from 0) cannot be scored: line {line} {reason}"
    )
    assert not output.exists()

    skipped = scorer_batch(model, source, output, "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    [error] = [json.loads(text) for text in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert error["row"] == row and error["error"].startswith(f"line {line} {reason}")
    ys = read_ys(output)
    assert len(ys) == row + 1  # every other row (the bad one is the last but one), and only them
    assert ys[row - 1 : row + 1] == [y(row - 1), y(row + 1)]  # either side of it


def test_bad_rows_anywhere_in_a_large_file_are_each_skipped_in_place(model, tmp_path):
    """Bad rows far apart, in different blocks of the fast reader, and side by side: each is
    listed with its own row and line, and every good row between them is scored, in order."""
    rows = 3 * BLOCK_BYTES // 48  # rows of about 48 bytes: the file spans several blocks
    bad = {5: b"5,\xff\n", rows // 2: b"1,2,3\n", rows // 2 + 1: b"7\n", rows - 3: b"9,\xc3\n"}
    lines = [bad.get(i, b"%d,%s\n" % (x(i), b"t" * 40)) for i in range(rows)]
    # Then a blank line (no row) and a row whose quoted cell holds a newline: read as before.
    source = tmp_path / "in.csv"
    source.write_bytes(b"x,s\n" + b"".join(lines) + b'\n%d,"two\nlines"\n' % x(rows))
    output = tmp_path / "out.csv"
    options = BatchOptions(model_path=model, input=source, output=output, on_error="skip", batch_rows=4096)
    summary = run_batch_job(load_settings(), options)
    errors = [json.loads(text) for text in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["error"].split(" ")[1]) for e in errors] == [(i, str(i + 2)) for i in sorted(bad)]
    assert (summary.rows_read, summary.rows_skipped) == (rows + 1, len(bad))
    assert read_ys(output) == [y(i) for i in range(rows + 1) if i not in bad]


def test_a_bad_row_in_a_directory_names_its_part(model, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "part-0.csv").write_text(f"x,s\n{x(0)},a\n{x(1)},b\n")
    (parts / "part-1.csv").write_bytes(b"x,s\n%d,c\n%d,\xff\n" % (x(2), x(3)))
    output = tmp_path / "out.csv"
    run_batch_job(
        load_settings(), BatchOptions(model_path=model, input=parts, output=output, on_error="skip")
    )
    [error] = [json.loads(text) for text in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert error == {"row": 3, "error": "line 3 of 'part-1.csv' is not UTF-8 (byte 0xff)"}
    assert read_ys(output) == [y(0), y(1), y(2)]
