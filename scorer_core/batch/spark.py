"""``scorer batch --engine spark``: the same job on Apache Spark, each partition scored inside
the executors by the same ``ChunkScorer`` the local engine runs, so a row gets the same answer.

- The model is loaded once per executor Python worker (Spark reuses its workers,
  ``spark.python.worker.reuse``), not once per batch or per task, and once on the driver, which
  scores the model's sample row to learn the output's columns before any row is read.
- Partitions travel as Arrow record batches (``mapInArrow``) of ``--batch-rows`` rows
  (``spark.sql.execution.arrow.maxRecordsPerBatch``): one model call per batch. Cells reach the
  scorer as the local reader gives them: CSV and JSON values as written, Parquet values written
  as a client would send them (``wire.tables``).
- Spark writes the output, a directory of parts, to ``<output>.partial`` first when the output
  is a local path, and renames it when the job has succeeded; elsewhere (``hdfs://``, ``s3a://``)
  Spark's own commit protocol keeps a failed job's parts out of the output.
- A bad row fails the job, or with ``--on-error skip`` is left out and reported. Its number
  counts from 0 in Spark's reading order (partition by partition), which is the file's order
  for a single input file.

``pyspark`` is an optional extra (``pip install 'scorer-core[spark]'``): serving never needs it.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from scorer_core.batch.job import BatchFailed, BatchOptions, BatchSummary, ChunkScorer
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.wire.tables import FORMATS, format_of

__all__ = ["SparkOptions", "run_spark_job"]

#: What a failing executor raises, so that the driver can name the row in the input's numbering.
_ROW_FAILED = "scorer-batch row failed: partition={partition} position={position} reason={reason}"
_ROW_FAILED_RE = re.compile(r"scorer-batch row failed: partition=(\d+) position=(\d+) reason=(.*)")


@dataclass(frozen=True)
class SparkOptions:
    """Where the job runs: ``--spark-master`` and every ``--spark-conf KEY=VALUE``. No master:
    ``spark-submit``'s when it launched us, else ``local[*]``."""

    master: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)


def run_spark_job(
    settings: Settings,
    options: BatchOptions,
    spark_options: SparkOptions = SparkOptions(),
    session: Any = None,
) -> BatchSummary:
    """Score ``options.input`` into the directory ``options.output`` on Spark; the summary.

    ``session``: a running ``SparkSession`` to use (and leave running); by default one is made
    from ``spark_options`` and stopped at the end."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigurationError("--engine spark needs pyspark: pip install 'scorer-core[spark]'") from None
    source, target = str(options.input), str(options.output)
    in_kind, out_kind = _format(source, "input"), _format(target, "output")
    if options.batch_rows < 1:
        raise ConfigurationError("--batch-rows must be at least 1")
    output = _local_path(target)
    if output is not None:
        _check_replaceable(output)
    started = time.monotonic()
    spark = session if session is not None else _session(spark_options)
    try:
        frame = _read(spark, in_kind, source)
        fields = list(frame.columns)
        driver = ChunkScorer.load(settings, options)
        try:
            out_fields = driver.output_fields(fields)
        finally:
            driver.close()
        counts = _Counts(spark.sparkContext)
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(options.batch_rows))
        score = _PartitionScorer(settings, options, fields, out_fields, counts)
        scored = frame.mapInArrow(score, _schema(out_fields))
        partial = output.with_name(output.name + ".partial") if output is not None else None
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        try:
            _write(scored, out_kind, str(partial) if partial is not None else target)
        except Exception as exc:
            failed = _ROW_FAILED_RE.search(str(exc))
            if failed is None:
                raise
            partition, position, reason = int(failed[1]), int(failed[2]), failed[3].strip()
            raise BatchFailed.at(_offsets(frame)[partition] + position, reason) from None
        finally:
            if partial is not None and not (partial / "_SUCCESS").exists():
                shutil.rmtree(partial, ignore_errors=True)
        summary = BatchSummary(
            rows_read=counts.read.value,
            rows_written=counts.written.value,
            rows_skipped=len(counts.failures.value),
        )
        if counts.failures.value:
            _write_failures(spark, frame, counts.failures.value, output, target)
        if output is not None and partial is not None:
            if output.is_dir():
                shutil.rmtree(output)
            elif output.exists():
                output.unlink()
            partial.replace(output)
    finally:
        if session is None:
            spark.stop()
    summary.seconds = time.monotonic() - started
    return summary


def _format(path: str, what: str) -> str:
    """The format by the path's extension; a local directory of parts may also say it by its parts."""
    local = _local_path(path)
    if what == "input" and local is not None and local.is_dir():
        return format_of(local, what=what)
    found = FORMATS.get(Path(path.rstrip("/")).suffix.lower())
    if found is None:
        raise ConfigurationError(
            f"{what} '{path}': unknown format; name it with one of {', '.join(sorted(FORMATS))}"
        )
    return found


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local_path(path: str) -> Path | None:
    """The local path a Spark path names, or ``None`` for another file system's URI."""
    if not _is_local(path):
        return None
    return Path(path.removeprefix("file://"))


def _write_failures(
    spark: Any, frame: Any, failures: list[tuple[int, int, str]], output: Path | None, target: str
) -> None:
    """``<output>.errors.jsonl``: each skipped row's number in the input's numbering, and why;
    a local file beside a local output, else a directory Spark writes beside the output."""
    offsets = _offsets(frame)
    numbered = sorted((offsets[p] + k, reason) for p, k, reason in failures)
    if output is None:
        errors = spark.createDataFrame(numbered, "row long, error string")
        errors.coalesce(1).write.mode("overwrite").json(target.rstrip("/") + ".errors.jsonl")
        return
    with open(output.with_name(output.name + ".errors.jsonl"), "wb") as out:
        out.writelines(orjson.dumps({"row": row, "error": reason}) + b"\n" for row, reason in numbered)


def _check_replaceable(output: Path) -> None:
    """Only a file, or a directory Spark wrote (it has ``_SUCCESS``), is replaced: a typo must
    not delete someone's directory."""
    if output.is_dir() and any(output.iterdir()) and not (output / "_SUCCESS").exists():
        raise ConfigurationError(
            f"output '{output}' is a directory that Spark did not write (no _SUCCESS); "
            "it is not replaced: choose another output"
        )


def _session(options: SparkOptions) -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("scorer batch")
    master = options.master
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit
        master = "local[*]"
    if master is not None:
        builder = builder.master(master)
    conf = dict(options.conf)
    if master is not None and master.startswith("local"):
        # Local executors run this interpreter (its venv holds the plugins); a cluster's are set
        # by spark.pyspark.python or PYSPARK_PYTHON, as the docs say. pyspark reads the variable
        # when the context starts, not the setting.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf.setdefault("spark.ui.enabled", "false")
        # One machine: keep Spark's own traffic on loopback, whatever the host name resolves to.
        conf.setdefault("spark.driver.host", "127.0.0.1")
        conf.setdefault("spark.driver.bindAddress", "127.0.0.1")
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _read(spark: Any, kind: str, path: str) -> Any:
    """Every CSV and JSON value as the text it was written as (as the local reader reads them);
    Parquet's own types, formatted on the executors as the local reader formats them."""
    reader = spark.read
    if kind == "csv":
        # RFC 4180 quoting, as pyarrow reads it; a malformed line fails the job instead of
        # being padded with nulls.
        return reader.csv(path, header=True, escape='"', mode="FAILFAST", inferSchema=False)
    if kind == "jsonl":
        return reader.json(path, primitivesAsString=True, mode="FAILFAST")
    return reader.parquet(path)


def _write(frame: Any, kind: str, path: str) -> None:
    writer = frame.write.mode("errorifexists")
    if kind == "csv":
        writer.csv(path, header=True, escape='"')
    elif kind == "jsonl":
        writer.json(path)
    else:
        writer.parquet(path)


def _schema(fields: list[str]) -> Any:
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([StructField(name, StringType(), nullable=False) for name in fields])


def _offsets(frame: Any) -> dict[int, int]:
    """Each partition's first row in the input's numbering: a count per partition, in the JVM."""
    from pyspark.sql.functions import spark_partition_id

    counts = dict(frame.groupBy(spark_partition_id().alias("p")).count().collect())
    offsets, first = {}, 0
    for partition in sorted(counts):
        offsets[partition] = first
        first += counts[partition]
    return offsets


class _Counts:
    """The job's counters, added to on the executors (Spark accumulators, which count each
    successful task once) and read on the driver for the summary."""

    def __init__(self, context: Any) -> None:
        from pyspark.accumulators import AccumulatorParam

        class Failures(AccumulatorParam):  # type: ignore[type-arg]
            def zero(self, value: list[Any]) -> list[Any]:
                return []

            def addInPlace(self, first: list[Any], second: list[Any]) -> list[Any]:
                first.extend(second)
                return first

        self.read = context.accumulator(0)
        self.written = context.accumulator(0)
        self.failures = context.accumulator([], Failures())


#: The scorer each executor Python worker loaded, kept for the worker's life: tasks come and go,
#: the model stays.
_loaded: dict[tuple[str, str | None, str], ChunkScorer] = {}


def _scorer_for(settings: Settings, options: BatchOptions) -> ChunkScorer:
    key = (str(options.model_path), options.runtime, options.contributions.value)
    scorer = _loaded.get(key)
    if scorer is None:
        scorer = _loaded[key] = ChunkScorer.load(settings, options)
        atexit.register(scorer.close)
    return scorer


class _PartitionScorer:
    """The function ``mapInArrow`` runs on the executors: record batches in, scored batches out.
    A class, so that Spark pickles its few fields, not a closure over the driver's state."""

    def __init__(
        self,
        settings: Settings,
        options: BatchOptions,
        fields: list[str],
        out_fields: list[str],
        counts: _Counts,
    ) -> None:
        self.settings = settings
        self.options = options
        self.fields = fields
        self.out_fields = out_fields
        self.read, self.written, self.failures = counts.read, counts.written, counts.failures

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        scorer = _scorer_for(self.settings, self.options)
        position = 0
        for batch in batches:
            if not batch.num_rows:
                continue
            # Arrow's columns as they come: the scorer reads them as the local reader's (wire.columns).
            scored = scorer.score(self.fields, batch.columns, position)
            if scored.failures:
                if self.options.on_error != "skip":
                    row, reason = scored.failures[0]
                    raise BatchFailed(_ROW_FAILED.format(partition=partition, position=row, reason=reason))
                self.failures.add([(partition, row, reason) for row, reason in scored.failures])
            position += batch.num_rows
            self.read.add(batch.num_rows)
            self.written.add(scored.num_rows)
            if scored.num_rows:
                yield pa.RecordBatch.from_arrays(
                    [pa.array(column, pa.string()) for column in scored.columns],
                    names=self.out_fields,
                )
