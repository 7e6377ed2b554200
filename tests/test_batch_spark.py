"""``scorer batch --engine spark`` on a real local Spark (``local[2]``): the same output as the
local engine for CSV, Parquet and JSON Lines (in the same types), with an id column and with
contributions; the model loaded once per executor Python worker; bad rows numbered as the
local engine numbers them; and the command line with ``--spark-master`` and ``--spark-conf``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.jobs.job import BatchFailed, BatchOptions, run_batch_job
from scorer_core.jobs.spark import run_spark_job
from scorer_core.schema import ShapleyType
from scorer_core.tables.files import read_whole
from tests.conftest import plugin_env
from tests.test_batch_typed import SCHEMA as TYPED_SCHEMA
from tests.test_batch_typed import SPEC as TYPED_SPEC
from tests.test_batch_typed import nan_as_text

pyspark = pytest.importorskip("pyspark")  # the [spark] extra; `make install-test` installs it

# In the parallel phase, sent first (the root conftest.py's SHARED_GROUPS): the module's local
# Spark session is the suite's longest fixture, and its tests bound no time.
pytestmark = pytest.mark.slow

#: The JVM of every Spark this module starts (spark-submit's launcher reads SPARK_SUBMIT_OPTS):
#: the client compiler only, and the serial collector. These jobs last seconds, in which C2's
#: compiler threads and G1's workers cost more than they give back: measured on this module,
#: about 75 s of processor time became 45 to 65 (the parallel phase of `make test` is bound by
#: processor time). What the jobs compute is the same.
SHORT_LIVED_JVM = {"SPARK_SUBMIT_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}

SPEC = {
    "inputs": [["x", "Float64"], ["city", "Str"]],
    "outputs": [["y", "Float64"], ["label", "Str"]],
    "contributions": ["ORIGINAL"],
}


def rows(n: int) -> list[dict[str, str]]:
    cities = ["Paris", "", "Rome, Lazio", 'Oslo "N"', "  padded  "]  # empty, a comma, quotes, spaces
    return [
        {"id": f"r{i}", "x": "" if i % 7 == 3 else f"{i * 1.5 - 20.25}", "city": cities[i % 5], "note": f" n{i}"}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One local[2] session for the module: Spark starts in seconds, not milliseconds. Its
    executors inherit this environment, which loads the probe plugin."""
    env = plugin_env(PYSPARK_PYTHON=sys.executable, **SHORT_LIVED_JVM)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    sys.path.insert(0, env["PYTHONPATH"].split(os.pathsep)[0])
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def model(tmp_path):
    def write(**spec) -> Path:
        path = tmp_path / f"m{len(list(tmp_path.glob('*.probe')))}.probe"
        path.write_text(json.dumps({**SPEC, **spec}))
        return path

    return write


def write_parts(directory: Path, table: list[dict[str, str]], parts: int, kind: str = "csv") -> Path:
    """The rows as ``parts`` files, so that Spark reads several partitions."""
    directory.mkdir()
    size = -(-len(table) // parts)
    for i in range(parts):
        chunk = pa.Table.from_pylist(table[i * size : (i + 1) * size])
        if kind == "csv":
            import pyarrow.csv as pc

            pc.write_csv(chunk, directory / f"part-{i}.csv")
        else:
            pq.write_table(chunk, directory / f"part-{i}.parquet")
    return directory


def settings():
    return load_settings(shapley_types_enabled="ALL")


def local_and_spark(spark, model: Path, source: Path, tmp_path: Path, kind: str, **options):
    local_out, spark_out = tmp_path / f"local.{kind}", tmp_path / f"spark.{kind}"
    local = run_batch_job(settings(), BatchOptions(model_path=model, input=source, output=local_out, **options))
    remote = run_spark_job(
        settings(), BatchOptions(model_path=model, input=source, output=spark_out, **options), session=spark
    )
    return local, remote, read_whole_dir(local_out), read_whole_dir(spark_out)


def read_whole_dir(path: Path) -> tuple[list[str], list[list[str]]]:
    """A file, or a directory of Spark's parts (its _SUCCESS and .crc files are skipped)."""
    if path.is_dir():
        fields: list[str] = []
        found: list[list[str]] = []
        for part in sorted(p for p in path.iterdir() if not p.name.startswith((".", "_"))):
            if part.stat().st_size == 0:
                continue
            names, part_rows = read_whole(part)
            fields = names
            found.extend(part_rows)
        return fields, found
    return read_whole(path)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_spark_writes_what_the_local_engine_writes(spark, model, tmp_path, kind):
    table = rows(200)
    if kind == "parquet":
        typed = [{**r, "x": float(r["x"]) if r["x"] else None, "city": r["city"] or None} for r in table]
        source = write_parts(tmp_path / "in", typed, 4, kind="parquet")
    else:
        source = write_parts(tmp_path / "in", table, 4)
    _, remote, (lf, lrows), (sf, srows) = local_and_spark(
        spark, model(), source, tmp_path, kind, id_column="id", keep_columns=("note",), batch_rows=16
    )
    assert lf == sf == ["id", "note", "y", "label"]
    assert len(lrows) == 200 and sorted(lrows) == sorted(srows)
    assert (remote.rows_read, remote.rows_written, remote.rows_skipped) == (200, 200, 0)
    assert not (tmp_path / f"spark.{kind}.partial").exists()


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_spark_writes_the_local_engines_types(spark, model, tmp_path, kind):
    """Every part-file has the local engine's schema (the declared output types, the input's
    integer id and kept float column), whether its integer outputs reached the core as integers
    (no x missing) or as floats with NaN; and the values are the local engine's."""
    table = [{"id": i, "x": None if i in (4, 13) else i * 0.75 - 10, "w": i / 4} for i in range(40)]
    source = write_parts(tmp_path / "in", table, 4, kind="parquet")  # x missing in parts 0 and 1 only
    path = model(**TYPED_SPEC)
    _, remote, _, _ = local_and_spark(
        spark, path, source, tmp_path, kind, id_column="id", keep_columns=("w",), batch_rows=4
    )
    assert (remote.rows_read, remote.rows_written) == (40, 40)
    local_out, spark_out = tmp_path / f"local.{kind}", tmp_path / f"spark.{kind}"
    parts = sorted(p for p in spark_out.iterdir() if p.name.startswith("part-") and p.stat().st_size)
    assert len(parts) >= 2
    if kind == "parquet":
        assert pq.read_schema(local_out).remove_metadata() == TYPED_SCHEMA
        assert [pq.read_schema(p).remove_metadata() for p in parts] == [TYPED_SCHEMA] * len(parts)
        local_rows = pq.read_table(local_out).to_pylist()
        spark_rows = [row for p in parts for row in pq.read_table(p).to_pylist()]
        local_rows, spark_rows = [list(map(nan_as_text, r)) for r in (local_rows, spark_rows)]
    else:
        local_rows = [json.loads(line) for line in local_out.read_text().splitlines()]
        spark_rows = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
        assert {type(local_rows[0][k]) for k in ("id", "as_i32", "as_i64")} == {int}
    assert [r["id"] for r in local_rows] == list(range(40))
    assert sorted(spark_rows, key=lambda r: r["id"]) == local_rows
    missing = next(r for r in spark_rows if r["id"] == 4)
    assert (missing["y"], missing["as_i32"], missing["as_b"], missing["as_s"], missing["as_t"]) == (
        "NaN", None, None, None, None
    )


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_contributions_on_spark_equal_the_local_engines(spark, model, tmp_path, kind):
    table = [{"id": r["id"], "x": r["x"] or "0"} for r in rows(60)]
    source = write_parts(tmp_path / "in", table, 3, kind="parquet")
    path = model(inputs=[["x", "Float64"]], classes=["no", "yes"])
    _, _, (lf, lrows), (sf, srows) = local_and_spark(
        spark, path, source, tmp_path, kind, id_column="id", contributions=ShapleyType.ORIGINAL
    )
    assert lf == sf == ["id", "no.x", "yes.x"]
    assert sorted(lrows) == sorted(srows) and len(srows) == 60
    if kind == "parquet":  # the contributions as floats, on both engines
        expected = pa.schema([("id", pa.string()), ("no.x", pa.float64()), ("yes.x", pa.float64())])
        parts = [p for p in (tmp_path / "spark.parquet").iterdir() if p.name.startswith("part-")]
        schemas = [pq.read_schema(p).remove_metadata() for p in [tmp_path / "local.parquet", *parts]]
        assert schemas == [expected] * (1 + len(parts))


def test_json_lines_in_and_out(spark, model, tmp_path):
    """Cells a Str input or a kept column sees as the local reader makes them: 1.50 as 1.5,
    -0 as 0, 1e7 as 10000000.0, a nested object as its JSON; blank lines are no rows."""
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({**r, "x": float(r["x"]) if r["x"] else None}) for r in rows(30)]
    lines += ['{"id": "odd", "x": 1.50, "city": -0, "note": {"z": 1, "y": [2, 3]}}', "", "   "]
    lines += ['{"id": "big", "x": 1e7, "city": 1e7, "note": true}']
    source.write_text("\n".join(lines) + "\n")
    _, _, (lf, lrows), (sf, srows) = local_and_spark(
        spark, model(), source, tmp_path, "jsonl", id_column="id", keep_columns=("note", "city")
    )
    assert lf == sf and sorted(lrows) == sorted(srows) and len(srows) == 32
    odd = next(r for r in srows if r[0] == "odd")
    assert odd[1:3] == ['{"z":1,"y":[2,3]}', "0"]


def test_json_lines_a_row_cannot_be_made_of_are_skipped_alike(spark, model, tmp_path):
    """Both engines read JSON Lines with the same function: a line that is no object, or holds
    a value nested too deeply to be a cell, is that row's failure on each (Spark's executors
    know no line numbers)."""
    source = tmp_path / "in.jsonl"
    nested = "[" * 500 + "]" * 500
    lines = [json.dumps({"id": f"r{i}", "x": i, "city": "Rome"}) for i in range(6)]
    lines[2] = '["not", "an", "object"]'
    lines[4] = '{"id": "deep", "x": 4, "city": ' + nested + "}"
    source.write_text("\n".join(lines) + "\n")
    local, remote, (lf, lrows), (sf, srows) = local_and_spark(
        spark, model(), source, tmp_path, "jsonl", id_column="id", on_error="skip"
    )
    assert (local.rows_skipped, remote.rows_skipped) == (2, 2)
    assert (
        lf == sf
        and sorted(lrows) == sorted(srows)
        and sorted(r[0] for r in srows) == ["r0", "r1", "r3", "r5"]
    )
    local_errors = [json.loads(t) for t in (tmp_path / "local.jsonl.errors.jsonl").read_text().splitlines()]
    spark_errors = [json.loads(t) for t in (tmp_path / "spark.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["error"]) for e in local_errors] == [
        (2, "line 3 is not a JSON object"),
        (4, "line 5 holds a value nested too deeply to be a cell (Recursion limit reached)"),
    ]
    assert [(e["row"], e["error"]) for e in spark_errors] == [
        (2, "the row is not a JSON object"),
        (4, "the row holds a value nested too deeply to be a cell (Recursion limit reached)"),
    ]


def test_no_spelling_of_the_input_is_replaced_nor_a_partial_file_spark_did_not_write(spark, model, tmp_path):
    scored = tmp_path / "scored.csv"  # a directory Spark wrote, that a later job can score again
    first = BatchOptions(
        model_path=model(), input=write_parts(tmp_path / "in", rows(4), 1), output=scored, keep_columns=("x", "city")
    )
    run_spark_job(settings(), first, session=spark)
    before = sorted((p.name, p.read_bytes()) for p in scored.iterdir())
    (tmp_path / "alias.csv").symlink_to(scored)
    refusals = {
        tmp_path / "alias.csv": "the output '{}' is the input",
        scored / "inner.csv": "is inside the input directory",
    }
    for output, refusal in refusals.items():
        with pytest.raises(ConfigurationError, match=refusal.format(tmp_path / "alias.csv")):
            run_spark_job(
                settings(), BatchOptions(model_path=model(), input=scored, output=output), session=spark
            )
        assert sorted((p.name, p.read_bytes()) for p in scored.iterdir()) == before
    (tmp_path / "again.csv.partial").write_text("someone else's")
    with pytest.raises(ConfigurationError, match="is a file this job did not write"):
        run_spark_job(
            settings(),
            BatchOptions(model_path=model(), input=scored, output=tmp_path / "again.csv"),
            session=spark,
        )
    assert (tmp_path / "again.csv.partial").read_text() == "someone else's"


def test_jobs_in_one_session_each_get_their_own_columns(spark, model, tmp_path):
    """The model stays loaded in the executors between jobs; the id and kept columns do not."""
    source = write_parts(tmp_path / "in", rows(20), 2)
    path = model()
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    run_spark_job(settings(), BatchOptions(model_path=path, input=source, output=first), session=spark)
    run_spark_job(
        settings(),
        BatchOptions(model_path=path, input=source, output=second, id_column="id", keep_columns=("note",)),
        session=spark,
    )
    assert read_whole_dir(first)[0] == ["y", "label"]
    fields, found = read_whole_dir(second)
    assert fields == ["id", "note", "y", "label"]
    assert sorted(r[:2] for r in found) == sorted([r["id"], r["note"]] for r in rows(20))


def test_the_model_is_loaded_once_per_executor_worker_not_per_batch(spark, model, tmp_path):
    log = tmp_path / "loads.log"
    path = model(load_log=str(log), outputs=[["y", "Float64"], ["pid", "Str"]])
    source = write_parts(tmp_path / "in", rows(400), 8)  # 8 partitions, 50 batches of 8 rows
    out = tmp_path / "out.parquet"
    run_spark_job(settings(), BatchOptions(model_path=path, input=source, output=out, batch_rows=8), session=spark)
    loads = log.read_text().split()
    driver = str(os.getpid())
    executor_loads = [pid for pid in loads if pid != driver]
    answered = {row[-1] for row in read_whole_dir(out)[1]}
    assert loads.count(driver) == 1  # the driver's, for the output's columns
    assert driver not in answered  # the executors scored every row
    # Each Python worker that Spark started (local[2]: one or two, as Spark chooses) loaded the
    # model exactly once, before its first of many batches, and every one of them scored rows.
    assert len(set(executor_loads)) == len(executor_loads), f"a worker loaded the model twice: {loads}"
    assert answered == set(executor_loads)


def test_bad_rows_are_numbered_as_the_local_engine_numbers_them(spark, model, tmp_path):
    table = rows(40)
    table[5]["x"] = "abc"  # not a number
    table[33]["x"] = "13"  # the probe model raises on 13
    source = write_parts(tmp_path / "in.csv", table, 1)
    path = model()
    out = tmp_path / "out.csv"
    with pytest.raises(BatchFailed) as local_failure:
        run_batch_job(settings(), BatchOptions(model_path=path, input=source, output=out))
    with pytest.raises(BatchFailed) as spark_failure:
        run_spark_job(settings(), BatchOptions(model_path=path, input=source, output=out, batch_rows=7), session=spark)
    assert str(spark_failure.value) == str(local_failure.value)
    assert str(spark_failure.value).startswith("row 5 (counting from 0) cannot be scored")
    assert not out.exists() and not (tmp_path / "out.csv.partial").exists()

    summary = run_spark_job(
        settings(),
        BatchOptions(model_path=path, input=source, output=out, batch_rows=7, on_error="skip", id_column="id"),
        session=spark,
    )
    assert (summary.rows_read, summary.rows_written, summary.rows_skipped) == (40, 38, 2)
    errors = [json.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [5, 33]
    assert "exploded" in errors[1]["error"]
    assert sorted(r[0] for r in read_whole_dir(out)[1]) == sorted(r["id"] for i, r in enumerate(table) if i not in (5, 33))
    # A later job that skips nothing leaves no side file of the earlier one, as the local engine.
    clean = write_parts(tmp_path / "clean", rows(6), 2)
    summary = run_spark_job(
        settings(), BatchOptions(model_path=path, input=clean, output=out, on_error="skip"), session=spark
    )
    assert summary.rows_skipped == 0
    assert not (tmp_path / "out.csv.errors.jsonl").exists(), "an earlier job's side file beside the new output"


def test_a_directory_spark_did_not_write_is_never_replaced(spark, model, tmp_path):
    source = write_parts(tmp_path / "in", rows(4), 1)
    for precious in (tmp_path / "results.csv", tmp_path / "again.csv.partial"):
        precious.mkdir()
        (precious / "thesis.tex").write_text("years of work")
    for output in (tmp_path / "results.csv", tmp_path / "again.csv"):
        with pytest.raises(ConfigurationError, match="Spark did not write"):
            run_spark_job(settings(), BatchOptions(model_path=model(), input=source, output=output), session=spark)
    assert (tmp_path / "results.csv" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "again.csv.partial" / "thesis.tex").read_text() == "years of work"
    # The output would replace the input: refused before anything is read.
    spark_written = tmp_path / "scored.csv"
    run_spark_job(settings(), BatchOptions(model_path=model(), input=source, output=spark_written), session=spark)
    with pytest.raises(ConfigurationError, match="replace the input"):
        run_spark_job(
            settings(), BatchOptions(model_path=model(), input=spark_written, output=spark_written), session=spark
        )
    assert (spark_written / "_SUCCESS").exists()


def test_uris_are_resolved_by_hadoop_and_a_finished_job_lands_under_its_name(spark, model, tmp_path):
    source = write_parts(tmp_path / "in", rows(10), 1)
    out = tmp_path / "out.parquet"
    for uri in (f"file:{out}", f"file://{out}"):
        run_spark_job(settings(), BatchOptions(model_path=model(), input=f"file:{source}", output=uri), session=spark)
        assert (out / "_SUCCESS").exists() and not (tmp_path / "out.parquet.partial").exists()
        assert len(read_whole_dir(out)[1]) == 10


def test_a_missing_model_input_stops_the_job_on_both_engines(spark, model, tmp_path):
    source = write_parts(tmp_path / "in", [{"id": "a", "city": "Rome"}], 1)
    options = {"model_path": model(), "input": source}
    with pytest.raises(ConfigurationError, match="no column for the model's input 'x'"):
        run_batch_job(settings(), BatchOptions(**options, output=tmp_path / "l.csv"))
    with pytest.raises(ConfigurationError, match="no column for the model's input 'x'"):
        run_spark_job(settings(), BatchOptions(**options, output=tmp_path / "s.csv"), session=spark)


def test_skipped_rows_listed_are_capped_but_all_counted(spark, model, tmp_path, monkeypatch):
    import scorer_core.jobs.spark as engine

    monkeypatch.setattr(engine, "MAX_LISTED_FAILURES", 3)
    table = [{**r, "x": "abc"} for r in rows(20)]
    source = write_parts(tmp_path / "in.csv", table, 1)
    out = tmp_path / "out.csv"
    summary = run_spark_job(
        settings(), BatchOptions(model_path=model(), input=source, output=out, on_error="skip"), session=spark
    )
    assert (summary.rows_read, summary.rows_written, summary.rows_skipped) == (20, 0, 20)
    listed = (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in listed] == [0, 1, 2]


def test_the_command_line_with_master_and_conf(model, tmp_path):
    source = write_parts(tmp_path / "in", rows(20), 2)
    out = tmp_path / "out.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "batch", str(model()), str(source), str(out),
         "--engine", "spark", "--spark-master", "local[2]", "--spark-conf", "spark.driver.host=127.0.0.1",
         "--spark-conf", "spark.sql.shuffle.partitions=3", "--id-column", "id"],
        env={**os.environ, **plugin_env(**SHORT_LIVED_JVM)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Scored 20 rows" in result.stderr
    assert sorted(r[0] for r in read_whole_dir(out)[1]) == sorted(f"r{i}" for i in range(20))
    bad = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "batch", str(model()), str(source), str(tmp_path / "o.csv"),
         "--engine", "spark", "--spark-conf", "no-equals-sign"],
        env={**os.environ, **plugin_env()}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "--spark-conf takes KEY=VALUE" in bad.stderr


def test_spark_submit_runs_the_command_as_docs_batch_md_shows(model, tmp_path):
    """`spark-submit <scorer_core/cli.py> batch ... --engine spark`: the master is
    spark-submit's (no --spark-master given), and the job writes its output."""
    import scorer_core.cli

    source = write_parts(tmp_path / "in", rows(12), 1)
    out = tmp_path / "out.csv"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[2]",
         "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
         "--conf", "spark.ui.enabled=false", scorer_core.cli.__file__,
         "batch", str(model()), str(source), str(out), "--engine", "spark", "--id-column", "id"],
        env={**os.environ, **plugin_env(PYSPARK_PYTHON=sys.executable, **SHORT_LIVED_JVM)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Scored 12 rows" in result.stdout + result.stderr  # spark-submit may join the streams
    assert sorted(r[0] for r in read_whole_dir(out)[1]) == sorted(f"r{i}" for i in range(12))
