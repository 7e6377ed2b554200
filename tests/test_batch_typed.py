"""``scorer batch`` writes Parquet and JSON Lines in the model's declared output types, the id
and kept columns in the input's own types, one schema for the whole job; CSV stays the HTTP
API's text. Each job is a real ``scorer batch`` process on real files."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.jobs.job import BatchOptions, run_batch_job
from scorer_core.schema import ShapleyType
from tests.conftest import probe_model_in_process, scorer_batch

#: Every type the contract has: ``as_*`` outputs are x in the declared type (the probe model).
SPEC = {
    "inputs": [["x", "Float64"]],
    "outputs": [
        ["y", "Float64"],
        ["as_f32", "Float32"],
        ["as_i32", "Int32"],
        ["as_i64", "Int64"],
        ["as_b", "Bool"],
        ["as_s", "Str"],
        ["as_t", "Time64"],
    ],
}
#: An integer id, a kept float column (a NaN and a null in it), and x missing in the second row:
#: with two rows a chunk, the first chunk's integer outputs reach the core as floats with NaN,
#: the second's as integers, and both must land in one integer column.
INPUT = pa.table(
    {
        "id": pa.array([10, 11, 12, 13], pa.int64()),
        "x": pa.array([1.5, None, -2.0, 0.1]),
        "w": pa.array([0.5, math.nan, None, 2.0]),
    }
)
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("w", pa.float64()),
        ("y", pa.float64()),
        ("as_f32", pa.float32()),
        ("as_i32", pa.int32()),
        ("as_i64", pa.int64()),
        ("as_b", pa.bool_()),
        ("as_s", pa.string()),
        ("as_t", pa.timestamp("us")),
    ]
)
T0 = datetime.datetime(2020, 1, 1)


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return probe_model_in_process(tmp_path, monkeypatch, SPEC)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    pq.write_table(INPUT, path)
    return path


def run(model: Path, source: Path, output: Path, *options: str) -> None:
    options = ("--id-column", "id", "--keep-columns", "w", "--batch-rows", "2", *options)
    result = scorer_batch(model, source, output, *options)
    assert result.returncode == 0, result.stderr


def nan_as_text(row: dict[str, Any]) -> dict[str, Any]:
    """NaN, which equals nothing, as the text JSON Lines spells it, so that rows compare."""
    return {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def test_parquet_carries_the_declared_types_and_the_inputs(model, source, tmp_path):
    output = tmp_path / "out.parquet"
    run(model, source, output)
    table = pq.read_table(output)
    assert table.schema.remove_metadata() == SCHEMA
    assert pq.ParquetFile(output).metadata.num_row_groups == 2  # two chunks, one schema
    f32 = pa.array([0.1], pa.float32())[0].as_py()
    assert list(map(nan_as_text, table.to_pylist())) == [
        {"id": 10, "w": 0.5, "y": 3.0, "as_f32": 1.5, "as_i32": 1, "as_i64": 1, "as_b": True,
         "as_s": "x=1.5", "as_t": T0 + datetime.timedelta(seconds=1.5)},
        # x missing: NaN stays NaN in float columns (a value); other types hold a null.
        {"id": 11, "w": "NaN", "y": "NaN", "as_f32": "NaN", "as_i32": None, "as_i64": None, "as_b": None,
         "as_s": None, "as_t": None},
        {"id": 12, "w": None, "y": -4.0, "as_f32": -2.0, "as_i32": -2, "as_i64": -2, "as_b": False,
         "as_s": "x=-2", "as_t": T0 - datetime.timedelta(seconds=2)},
        {"id": 13, "w": 2.0, "y": 0.2, "as_f32": f32, "as_i32": 0, "as_i64": 0, "as_b": True,
         "as_s": "x=0.1", "as_t": T0 + datetime.timedelta(seconds=0.1)},
    ]  # fmt: skip
    import pandas as pd

    # pandas' own types where its default dtypes can hold the column; all of them exactly with
    # Arrow's dtypes (numpy's integers and booleans hold no missing value).
    plain = pd.read_parquet(output).dtypes.astype(str).to_dict()
    assert {k: plain[k] for k in ("id", "w", "y", "as_f32", "as_t")} == {
        "id": "int64", "w": "float64", "y": "float64", "as_f32": "float32", "as_t": "datetime64[us]",
    }  # fmt: skip
    arrow = pd.read_parquet(output, dtype_backend="pyarrow").dtypes.astype(str).to_dict()
    assert arrow == {
        "id": "int64[pyarrow]", "w": "double[pyarrow]", "y": "double[pyarrow]", "as_f32": "float[pyarrow]",
        "as_i32": "int32[pyarrow]", "as_i64": "int64[pyarrow]", "as_b": "bool[pyarrow]",
        "as_s": "string[pyarrow]", "as_t": "timestamp[us][pyarrow]",
    }  # fmt: skip


def test_json_lines_carry_json_types_while_csv_stays_the_http_apis_text(model, source, tmp_path):
    run(model, source, tmp_path / "out.jsonl")
    run(model, source, tmp_path / "out.csv")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 10, "w": 0.5, "y": 3.0, "as_f32": 1.5, "as_i32": 1, "as_i64": 1, "as_b": True,
         "as_s": "x=1.5", "as_t": "2020-01-01T00:00:01.500000"},
        {"id": 11, "w": "NaN", "y": "NaN", "as_f32": "NaN", "as_i32": None, "as_i64": None, "as_b": None,
         "as_s": None, "as_t": None},
        {"id": 12, "w": None, "y": -4.0, "as_f32": -2.0, "as_i32": -2, "as_i64": -2, "as_b": False,
         "as_s": "x=-2", "as_t": "2019-12-31T23:59:58.000000"},
        {"id": 13, "w": 2.0, "y": 0.2, "as_f32": 0.1, "as_i32": 0, "as_i64": 0, "as_b": True,
         "as_s": "x=0.1", "as_t": "2020-01-01T00:00:00.100000"},
    ]  # fmt: skip
    assert '"as_f32":0.1,' in lines[3]  # a float32's shortest digits, not 0.10000000149011612
    # CSV: the HTTP API's cells, each chunk's integers as the core gave them (floats, once NaN).
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        '"id","w","y","as_f32","as_i32","as_i64","as_b","as_s","as_t"',
        '"10","0.5","3.0","1.5","1.0","1.0","true","x=1.5","2020-01-01T00:00:01.500"',
        '"11","NaN","NaN","NaN","NaN","NaN","","",""',
        '"12","","-4.0","-2.0","-2","-2","false","x=-2","2019-12-31T23:59:58.000"',
        '"13","2.0","0.2","0.1","0","0","true","x=0.1","2020-01-01T00:00:00.100"',
    ]


def test_an_output_its_declared_type_cannot_hold_is_that_rows_failure(tmp_path, monkeypatch):
    """A model whose schema says Int32 but that answers 1.5: the row fails, naming the output and
    the type, rather than a truncated or retyped column; the other rows are written."""
    spec = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"], ["raw_n", "Int32"]]}
    model = probe_model_in_process(tmp_path, monkeypatch, spec)
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "x": [2.0, 1.5, 3e9]}), source)
    output = tmp_path / "out.parquet"
    failed = scorer_batch(model, source, output, "--id-column", "id")
    assert failed.returncode == 1 and not output.exists()
    assert (
        "row 1 (counting from 0) cannot be scored: Failed scoring request due to: Runtime 'probe-scorer' "
        "returned output 'raw_n' that is not Int32, as the model's schema declares it: "
        "Float value 1.500000 was truncated converting to int32"
    ) in failed.stderr
    skipped = scorer_batch(model, source, output, "--id-column", "id", "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert pq.read_table(output).to_pylist() == [{"id": 1, "y": 4.0, "raw_n": 2}]
    errors = [json.loads(line) for line in (tmp_path / "out.parquet.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [1, 2] and "truncated converting to int32" in errors[1]["error"]


def test_parts_whose_kept_column_types_disagree_stop_the_job_naming_it(model, tmp_path):
    """The first part's types are the output's; a later part's column that cannot be cast to
    them stops the job (exit status 2) before anything is published."""
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"id": pa.array([1], pa.int32()), "x": [1.0]}), parts / "part-0.parquet")
    pq.write_table(pa.table({"id": pa.array([2], pa.int64()), "x": [2.0]}), parts / "part-1.parquet")
    pq.write_table(pa.table({"id": ["three"], "x": [3.0]}), parts / "part-2.parquet")
    output = tmp_path / "out.parquet"
    result = scorer_batch(model, parts, output, "--id-column", "id")
    assert result.returncode == 2, result.stderr
    assert "the output's columns change type between chunks of the input: 'id' (int32, then string)" in result.stderr
    assert "Traceback" not in result.stderr and not output.exists()
    (parts / "part-2.parquet").unlink()
    assert scorer_batch(model, parts, output, "--id-column", "id").returncode == 0
    assert pq.read_table(output).column("id").to_pylist() == [1, 2]  # int64 that fits: cast to int32
    assert pq.read_table(output).schema.field("id").type == pa.int32()



def test_contributions_are_floats_beside_the_inputs_id(tmp_path, monkeypatch):
    spec = {"inputs": [["x", "Float64"]], "contributions": ["ORIGINAL"], "classes": ["no", "yes"]}
    model = probe_model_in_process(tmp_path, monkeypatch, spec)
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": pa.array([7, 8], pa.int32()), "x": [1.5, -2.0]}), source)
    settings = load_settings(shapley_types_enabled="ALL")
    options = BatchOptions(model, source, tmp_path / "out.jsonl", id_column="id", contributions=ShapleyType.ORIGINAL)
    run_batch_job(settings, options)
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        {"id": 7, "no.x": 1.5, "yes.x": 3.0},
        {"id": 8, "no.x": -2.0, "yes.x": -4.0},
    ]
    run_batch_job(settings, dataclasses.replace(options, output=tmp_path / "out.parquet"))
    assert pq.read_schema(tmp_path / "out.parquet").remove_metadata() == pa.schema(
        [("id", pa.int32()), ("no.x", pa.float64()), ("yes.x", pa.float64())]
    )
