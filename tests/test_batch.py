"""``scorer batch`` on one machine: the same answers as the HTTP API for the same rows, every
format in and out, directories of parts, bad rows, and nothing left under the final name when a
job fails or is stopped."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.jobs.job import BatchFailed, BatchOptions, run_batch_job
from scorer_core.schema import ShapleyType
from scorer_core.tables.files import read_chunks
from tests.conftest import plugin_env, probe_model_in_process

SPEC = {
    "inputs": [["x", "Float64"], ["city", "Str"]],
    "outputs": [["y", "Float64"], ["label", "Str"]],
    "contributions": ["ORIGINAL"],
}
ROWS = [
    {"id": "a", "x": "1.5", "city": "Paris", "note": "kept"},
    {"id": "b", "x": "", "city": "", "note": ""},  # missing cells
    {"id": "c", "x": "-2", "city": "Rome", "note": "x"},
    {"id": "d", "x": "1e3", "city": "Oslo", "note": "y"},
]


@pytest.fixture
def model(tmp_path, monkeypatch):
    return probe_model_in_process(tmp_path, monkeypatch, SPEC)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def batch(model: Path, source: Path, output: Path, **options) -> object:
    settings = load_settings(shapley_types_enabled="ALL")
    return run_batch_job(settings, BatchOptions(model_path=model, input=source, output=output, **options))


def test_every_row_gets_the_http_apis_answer(model, tmp_path, probe_server):
    source = write_csv(tmp_path / "in.csv", ROWS)
    summary = batch(model, source, tmp_path / "out.csv", id_column="id", keep_columns=("note",), batch_rows=3)
    assert (summary.rows_read, summary.rows_written, summary.rows_skipped) == (4, 4, 0)
    written = read_csv(tmp_path / "out.csv")
    assert list(written[0]) == ["id", "note", "y", "label"]
    with probe_server(record_headers=False, **SPEC) as target:
        fields = ["id", "note", "x", "city"]
        reply = target.post(
            "/model/score",
            {
                "fields": fields,
                "rows": [[r[f] for f in fields] for r in ROWS],
                "includeFieldsInOutput": ["id", "note"],
            },
        ).json()
    assert reply["fields"] == list(written[0])
    assert [list(row.values()) for row in written] == reply["score"]


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_each_format_in_and_out_gives_the_same_rows(model, tmp_path, kind):
    csv_in = write_csv(tmp_path / "in.csv", ROWS)
    expected_out = tmp_path / "expected.csv"
    batch(model, csv_in, expected_out, id_column="id")
    expected = read_csv(expected_out)
    source = tmp_path / f"in.{kind}"
    typed = [{"id": r["id"], "x": float(r["x"]) if r["x"] else None, "city": r["city"] or None} for r in ROWS]
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(typed), source)
    elif kind == "jsonl":
        source.write_text("".join(json.dumps(r) + "\n" for r in typed))
    else:
        source = csv_in
    output = tmp_path / f"out.{kind}"
    batch(model, source, output, id_column="id")
    if kind == "parquet":  # NaN, which equals nothing, as JSON Lines spells it
        got = [{k: "NaN" if v != v else v for k, v in r.items()} for r in pq.read_table(output).to_pylist()]
    elif kind == "jsonl":
        got = [json.loads(line) for line in output.read_text().splitlines()]
    else:
        got = read_csv(output)
    if kind != "csv":  # the same values, y in the model's Float64 (tests/test_batch_typed.py)
        expected = [{**r, "y": r["y"] if r["y"] == "NaN" else float(r["y"])} for r in expected]
    assert got == expected


def test_a_directory_of_parts_is_read_in_order_in_chunks(model, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    write_csv(parts / "part-0.csv", ROWS[:2])
    write_csv(parts / "part-1.csv", ROWS[2:])
    (parts / "_SUCCESS").write_text("")  # as Spark writes it: ignored
    chunks = list(read_chunks(parts, 1))
    assert [len(columns[0]) for _, columns in chunks] == [1, 1, 1, 1]  # one row per chunk
    batch(model, parts, tmp_path / "out.jsonl", id_column="id")
    assert [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        "a",
        "b",
        "c",
        "d",
    ]


def test_bad_rows_fail_the_job_or_go_to_a_side_file_with_their_numbers(model, tmp_path):
    rows = [
        *ROWS,
        {"id": "e", "x": "abc", "city": "Bern", "note": ""},
        {"id": "f", "x": "13", "city": "Nice", "note": ""},
    ]
    source = write_csv(tmp_path / "in.csv", rows)
    output = tmp_path / "out.csv"
    with pytest.raises(BatchFailed) as failed:
        batch(model, source, output)
    assert str(failed.value) == (  # one row number, the file's
        "row 4 (counting from 0) cannot be scored: "
        "Invalid scoring request due to: field 'x': cannot parse 'abc' as Float64"
    )
    assert not output.exists() and not (tmp_path / "out.csv.partial").exists()
    summary = batch(model, source, output, on_error="skip", id_column="id")
    assert (summary.rows_written, summary.rows_skipped) == (4, 2)
    assert [r["id"] for r in read_csv(output)] == ["a", "b", "c", "d"]
    errors = [json.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [4, 5]
    assert "cannot parse" in errors[0]["error"] and "exploded" in errors[1]["error"]


def test_a_stopped_job_leaves_nothing_under_the_final_name(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ROWS * 10)
    output = tmp_path / "out.csv"

    def interrupt(summary) -> None:
        raise KeyboardInterrupt

    settings = load_settings()
    with pytest.raises(KeyboardInterrupt):
        run_batch_job(
            settings, BatchOptions(model_path=model, input=source, output=output, batch_rows=5), interrupt
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "m.probe"]


def test_contributions_instead_of_predictions(model, tmp_path, probe_server):
    numeric = tmp_path / "numeric.probe"
    numeric.write_text(json.dumps({**SPEC, "inputs": [["x", "Float64"]]}))
    rows = [{"id": r["id"], "x": r["x"] or "0"} for r in ROWS]
    source = write_csv(tmp_path / "in.csv", rows)
    batch(numeric, source, tmp_path / "out.csv", id_column="id", contributions=ShapleyType.ORIGINAL)
    written = read_csv(tmp_path / "out.csv")
    assert list(written[0]) == ["id", "x"]
    env = {"SHAPLEY_TYPES_ENABLED": "ALL"}
    with probe_server(env=env, record_headers=False, **{**SPEC, "inputs": [["x", "Float64"]]}) as target:
        body = {"fields": ["x"], "rows": [[r["x"]] for r in rows], "requestShapleyValueType": "ORIGINAL"}
        reply = target.post("/model/contribution", body).json()
    assert [[row["x"]] for row in written] == reply["contributionGroups"][0]["contributions"]


def test_the_command_line(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ROWS)
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "batch", str(model), str(source), str(tmp_path / "out.parquet"),
         "--id-column", "id", "--keep-columns", "note,city", "--batch-rows", "2"],
        env={**os.environ, **plugin_env()}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Scored 4 rows" in result.stderr
    assert pq.read_table(tmp_path / "out.parquet").column_names == ["id", "note", "city", "y", "label"]
    missing = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "batch", str(model), str(source), str(tmp_path / "o.csv"), "--id-column", "nope"],
        env={**os.environ, **plugin_env()}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and "the input has no column 'nope'" in missing.stderr
    assert not (tmp_path / "o.csv").exists()


def test_the_progress_line_says_how_much_is_left(tmp_path):
    from scorer_core.jobs.job import BatchSummary, progress_line
    from scorer_core.tables.files import estimate_rows

    csv_in = write_csv(tmp_path / "in.csv", ROWS * 500)
    estimated, exact = estimate_rows(csv_in)
    assert not exact and abs(estimated - 2000) <= 20  # from the bytes of the first lines
    parquet_in = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS * 3), parquet_in)
    assert estimate_rows(parquet_in) == (12, True)  # Parquet's footer counts them
    line = progress_line(
        BatchSummary(rows_read=500_000, seconds=10.0, rows_total=2_000_000, total_exact=True)
    )
    assert line == "500,000 of 2,000,000 rows (25%), 50,000 rows/s, 10 s, 30 s left"
    line = progress_line(BatchSummary(rows_read=1_000, seconds=1.0, rows_total=4_000_000, rows_skipped=3))
    assert line == "1,000 of about 4,000,000 rows (0%), 1,000 rows/s, 1 s, 1 h 06 min left, 3 skipped"
    # An estimate that fell short never shows more than 100% or a negative time.
    assert progress_line(BatchSummary(rows_read=50, seconds=1.0, rows_total=40)).startswith(
        "50 of about 50 rows (100%)"
    )
    assert progress_line(BatchSummary(rows_read=7, seconds=0.0)) == "7 rows, 0 rows/s, 0 s"


def test_the_commands_default_chunk_is_the_jobs_own():
    from scorer_core.cli import _parser
    from scorer_core.jobs.job import BatchOptions

    args = _parser().parse_args(["batch", "m", "in.csv", "out.csv"])
    assert args.batch_rows == BatchOptions(model_path=Path("m"), input=Path("i"), output=Path("o")).batch_rows
