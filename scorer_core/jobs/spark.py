"""``scorer batch --engine spark``: the same job on Apache Spark, each partition scored inside
the executors by the same ``ChunkScorer`` the local engine runs, so a row gets the same answer.

- The model is loaded once per executor Python worker (Spark reuses its workers,
  ``spark.python.worker.reuse``), not once per batch or per task, and once on the driver, which
  scores the model's sample row to learn the output's columns before any row is read.
- Partitions travel as Arrow record batches (``mapInArrow``) of ``--batch-rows`` rows
  (``spark.sql.execution.arrow.maxRecordsPerBatch``): one model call per batch. Cells reach the
  scorer as the local reader gives them: CSV values as written, JSON Lines parsed on the
  executors by the local reader's own ``json_lines``, Parquet values written as a client would
  send them (``wire.columns``).
- Spark writes the output, a directory of parts, to ``<output>.partial``, which is renamed to
  the output once the job has succeeded, through Hadoop's file system API, so the same holds
  for local paths, ``hdfs://`` and ``s3a://``. A directory Spark did not write (no
  ``_SUCCESS``) is never replaced.
- A bad row fails the job, or with ``--on-error skip`` is left out and reported. Its number
  counts from 0 in Spark's reading order (partition by partition), which is the file's order
  for a single input file.

``pyspark`` is an optional extra (``pip install 'scorer-core[spark]'``): serving never needs it.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.jobs.job import (
    BatchFailed,
    BatchOptions,
    BatchSummary,
    ChunkScorer,
    ScoredChunk,
    failure_line,
    load_model,
)
from scorer_core.jobs.outputs import StagedFile, check_targets
from scorer_core.schema import DataType
from scorer_core.tables.files import FORMATS, as_arrow, json_fields, json_lines, part_formats
from scorer_core.tables.rows import BadRow, Chunk

__all__ = ["MAX_LISTED_FAILURES", "SparkOptions", "run_spark_job"]

#: What a failing executor raises, so that the driver can say it in the local engine's words.
_ROW_FAILED = "scorer-batch row failed: partition={partition} position={position} reason={reason}"
_ROW_FAILED_RE = re.compile(r"scorer-batch row failed: partition=(\d+) position=(\d+) reason=(.*)")
_INPUT_BAD = "scorer-batch bad input: {reason}"
_INPUT_BAD_RE = re.compile(r"scorer-batch bad input: (.*)")

#: With ``--on-error skip``, each task lists at most this many failed rows in the side file
#: (they travel to the driver); more are counted, not listed, so that a column wrong for every
#: row cannot fill the driver's memory.
MAX_LISTED_FAILURES = 10_000


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
    if options.batch_rows < 1:
        raise ConfigurationError("--batch-rows must be at least 1")
    started = time.monotonic()
    spark = session if session is not None else _session(spark_options)
    try:
        summary = _run(spark, settings, options)
    finally:
        if session is None:
            spark.stop()
    summary.seconds = time.monotonic() - started
    return summary


def _run(spark: Any, settings: Settings, options: BatchOptions) -> BatchSummary:
    source, output = _Files(spark, str(options.input)), _Files(spark, str(options.output))
    in_kind, out_kind = source.input_format(), output.output_format()
    if source.path.equals(output.path):
        raise ConfigurationError("the output would replace the input: choose another output")
    partial, errors = output.sibling(".partial"), output.sibling(".errors.jsonl")
    if source.is_local() and output.is_local():  # every other spelling, as the local engine checks
        targets = {"output": output.local(output.path), "output's .partial": output.local(partial)}
        if options.on_error == "skip":
            targets["side file of skipped rows"] = output.local(errors)
        check_targets(source.local(source.path), targets, files=False)
    output.check_replaceable(output.path)
    output.check_replaceable(partial, temporary=True)
    # Stable plans: the count of rows per partition (for row numbers) splits the input as the
    # scoring did; timestamps are written in UTC, whatever the driver's zone.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(options.batch_rows))
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    if spark.conf.get("spark.sql.leafNodeDefaultParallelism", None) is None:
        spark.conf.set("spark.sql.leafNodeDefaultParallelism", str(spark.sparkContext.defaultParallelism))
    if spark.conf.get("spark.sql.parquet.outputTimestampType", None) is None:
        # A kept time column as the local engine writes it (microseconds, in UTC), not as INT96,
        # which readers take for nanoseconds without a zone.
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    frame, fields = _read(spark, in_kind, str(source.path))
    typed = out_kind != "csv"
    driver = ChunkScorer.load(settings, options, typed=typed)
    try:
        out_fields = driver.output_fields(fields)
        schema = _schema(out_fields, [driver.output_type(name) for name in out_fields], frame, in_kind, typed)
    finally:
        driver.close()
    counts = _Counts(spark.sparkContext)
    score = _PartitionScorer(settings, options, in_kind, fields, out_fields, counts, typed)
    scored = frame.mapInArrow(score, schema)
    output.delete(partial)
    try:
        _write(scored, out_kind, str(partial))
    except Exception as exc:
        output.delete(partial)
        _raise_ours(exc, frame)
        raise
    except BaseException:
        output.delete(partial)
        raise
    summary = BatchSummary(
        rows_read=counts.read.value, rows_written=counts.written.value, rows_skipped=counts.skipped.value
    )
    if counts.failures.value:
        offsets = _offsets_of(counts.partitions.value)
        numbered = sorted((offsets[p] + k, reason) for p, k, reason in counts.failures.value)
        output.write_failures(numbered)
    elif options.on_error == "skip":
        output.delete(errors)  # an earlier job's, about an output now replaced (as the local engine)
    output.check_replaceable(output.path)  # again: the job may have run for hours
    output.delete(output.path)
    output.rename(partial, output.path)
    return summary


def _raise_ours(exc: Exception, frame: Any) -> None:
    """Our executors' failures in the local engine's words (Spark wraps them in its own)."""
    text = str(exc)
    bad = _INPUT_BAD_RE.search(text)
    if bad is not None:
        raise ConfigurationError(bad[1].strip()) from None
    failed = _ROW_FAILED_RE.search(text)
    if failed is not None:
        partition, position, reason = int(failed[1]), int(failed[2]), failed[3].strip()
        raise BatchFailed.at(_offsets(frame)[partition] + position, reason) from None


class _Files:
    """A path on whichever file system Hadoop resolves it to (``file:``, ``hdfs:``, ``s3a:``),
    so that checks, deletes and the final rename happen where Spark writes."""

    def __init__(self, spark: Any, target: str) -> None:
        jvm = spark.sparkContext._jvm
        self._spark = spark
        self._hadoop_path = jvm.org.apache.hadoop.fs.Path
        raw = self._hadoop_path(target)
        self.fs = raw.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        self.path = self.fs.makeQualified(raw)
        self.target = target

    def _name(self, path: Any) -> str:
        return str(path.getName())

    def sibling(self, suffix: str) -> Any:
        return self._hadoop_path(self.path.toString() + suffix)

    def is_local(self) -> bool:
        return str(self.fs.getScheme()) == "file"

    def local(self, path: Any) -> Path:
        """A ``file:`` path as this machine names it."""
        return Path(str(path.toUri().getPath()))

    def input_format(self) -> str:
        found = FORMATS.get(Path(self._name(self.path)).suffix.lower())
        if found is not None:
            return found
        if self.fs.exists(self.path) and self.fs.getFileStatus(self.path).isDirectory():
            kinds = part_formats(self._name(status.getPath()) for status in self.fs.listStatus(self.path))
            if len(kinds) == 1:
                return kinds.pop()
        raise ConfigurationError(
            f"input '{self.target}': unknown format; name it with one of {', '.join(sorted(FORMATS))}, "
            "or use a directory of such parts"
        )

    def output_format(self) -> str:
        found = FORMATS.get(Path(self._name(self.path)).suffix.lower())
        if found is None:
            raise ConfigurationError(
                f"output '{self.target}': unknown format; name it with one of {', '.join(sorted(FORMATS))}"
            )
        return found

    def check_replaceable(self, path: Any, *, temporary: bool = False) -> None:
        """Only a file, an empty directory, or a directory Spark wrote (``_SUCCESS``; for our
        own ``.partial``, also a failed job's ``_temporary``) is ever replaced: a typo must not
        delete someone's directory. A file at ``.partial`` is someone else's: the job writes a
        directory there."""
        if not self.fs.exists(path):
            return
        if not self.fs.getFileStatus(path).isDirectory():
            if temporary:
                raise ConfigurationError(
                    f"'{path.toString()}' is a file this job did not write; it is not replaced: "
                    "choose another output"
                )
            return
        names = {self._name(status.getPath()) for status in self.fs.listStatus(path)}
        if not names or "_SUCCESS" in names or (temporary and "_temporary" in names):
            return
        raise ConfigurationError(
            f"output '{path.toString()}' is a directory that Spark did not write (no _SUCCESS); "
            "it is not replaced: choose another output"
        )

    def delete(self, path: Any) -> None:
        if self.fs.exists(path):
            self.fs.delete(path, True)

    def rename(self, source: Any, target: Any) -> None:
        if not self.fs.rename(source, target):
            raise ConfigurationError(f"could not rename '{source.toString()}' to '{target.toString()}'")

    def write_failures(self, numbered: list[tuple[int, str]]) -> None:
        """``<output>.errors.jsonl``: each listed skipped row's number and why; a file beside a
        local output, else a directory of one part that Spark writes."""
        errors = self.sibling(".errors.jsonl")
        if self.is_local():  # staged as the local engine's: a link there is replaced, not followed
            with StagedFile(self.local(errors)) as staged:
                staged.handle.writelines(failure_line(row, reason) for row, reason in numbered)
                staged.publish()
            return
        table = self._spark.createDataFrame(numbered, "row long, error string")
        table.coalesce(1).write.mode("overwrite").json(errors.toString())


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


def _read(spark: Any, kind: str, path: str) -> tuple[Any, list[str]]:
    """The input, and its field names. CSV values are the text written (as the local reader
    reads them); JSON Lines come as their lines, parsed on the executors by ``json_lines``;
    Parquet keeps its types, formatted on the executors as the local reader formats them."""
    reader = spark.read
    if kind == "csv":
        # RFC 4180 quoting, as pyarrow reads it; a malformed line fails the job instead of
        # being padded with nulls.
        frame = reader.csv(path, header=True, escape='"', mode="FAILFAST", inferSchema=False)
        return frame, list(frame.columns)
    if kind == "jsonl":
        from pyspark.sql.functions import col, trim

        # Blank lines are no rows, here as in the local reader (and so not in the numbering).
        lines = reader.text(path).filter(trim(col("value")) != "")
        first = lines.first()
        names = json_fields(1, first["value"], f"input '{path}'") if first is not None else []
        return lines, names
    frame = reader.parquet(path)
    return frame, list(frame.columns)


def _write(frame: Any, kind: str, path: str) -> None:
    writer = frame.write.mode("errorifexists")
    if kind == "csv":
        # Spark trims cells when it writes CSV, unless told not to: the answers are written whole.
        writer.csv(
            path, header=True, escape='"', ignoreLeadingWhiteSpace=False, ignoreTrailingWhiteSpace=False
        )
    elif kind == "jsonl":
        # Nulls written as null, not left out, and times as the local engine writes them
        # (ISO 8601 to the microsecond; a zoned time in UTC, as the session's zone is).
        writer.options(
            ignoreNullFields=False,
            timestampNTZFormat="yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
            timestampFormat="yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
        ).json(path)
    else:
        writer.parquet(path)


def _schema(fields: list[str], types: list[DataType | None], frame: Any, in_kind: str, typed: bool) -> Any:
    """The output's schema, declared before any row is scored: every part-file gets it. For
    CSV, the HTTP API's string cells. Else each model output in its declared type
    (``jobs.typed``) and each copied column in the input's: a Parquet column as Spark reads
    it, the cells of CSV and JSON Lines as strings."""
    from pyspark.sql import types as spark_types

    if not typed:
        return spark_types.StructType(
            [spark_types.StructField(name, spark_types.StringType(), nullable=False) for name in fields]
        )
    declared = {
        DataType.FLOAT64: spark_types.DoubleType(),
        DataType.FLOAT32: spark_types.FloatType(),
        DataType.INT32: spark_types.IntegerType(),
        DataType.INT64: spark_types.LongType(),
        DataType.BOOL: spark_types.BooleanType(),
        DataType.STR: spark_types.StringType(),
        DataType.TIME64: spark_types.TimestampNTZType(),  # jobs.typed.arrow_type: no zone
    }
    columns = []
    for name, data_type in zip(fields, types, strict=True):
        if data_type is not None:
            kind = declared[data_type]
        elif in_kind == "parquet":
            kind = frame.schema[name].dataType
        else:
            kind = spark_types.StringType()
        columns.append(spark_types.StructField(name, kind, nullable=True))
    return spark_types.StructType(columns)


def _offsets(frame: Any) -> dict[int, int]:
    """Each partition's first row in the input's numbering: a count per partition, in the JVM
    (after a failed job, which left no counts of its own)."""
    from pyspark.sql.functions import spark_partition_id

    return _offsets_of(dict(frame.groupBy(spark_partition_id().alias("p")).count().collect()))


def _offsets_of(counts: Mapping[int, int]) -> dict[int, int]:
    offsets, first = {}, 0
    for partition in sorted(counts):
        offsets[partition] = first
        first += counts[partition]
    return offsets


class _Counts:
    """The job's counters, added to on the executors (Spark accumulators, which count each
    successful task once) and read on the driver: rows, listed failures, rows per partition."""

    def __init__(self, context: Any) -> None:
        from pyspark.accumulators import AccumulatorParam

        class Listed(AccumulatorParam):  # type: ignore[type-arg]
            def zero(self, value: list[Any]) -> list[Any]:
                return []

            def addInPlace(self, first: list[Any], second: list[Any]) -> list[Any]:
                first.extend(second)
                return first

        class PerPartition(AccumulatorParam):  # type: ignore[type-arg]
            def zero(self, value: dict[int, int]) -> dict[int, int]:
                return {}

            def addInPlace(self, first: dict[int, int], second: dict[int, int]) -> dict[int, int]:
                for key, value in second.items():
                    first[key] = first.get(key, 0) + value
                return first

        self.read = context.accumulator(0)
        self.written = context.accumulator(0)
        self.skipped = context.accumulator(0)
        self.failures = context.accumulator([], Listed())
        self.partitions = context.accumulator({}, PerPartition())


#: The model each executor Python worker loaded, kept for the worker's life: tasks come and go,
#: the model stays. Keyed by everything the loaded model depends on, so that a later job in the
#: same session (another model, other settings, a model file replaced) loads its own.
_loaded: dict[tuple[str, str | None, int, str], tuple[Any, Any]] = {}


def _scorer_for(settings: Settings, options: BatchOptions, typed: bool) -> ChunkScorer:
    path = Path(options.model_path)
    key = (str(path), options.runtime, path.stat().st_mtime_ns, settings.model_dump_json())
    found = _loaded.get(key)
    if found is None:
        found = _loaded[key] = load_model(settings, options)
        atexit.register(found[0].close)
    return ChunkScorer(found[0], found[1], options, typed=typed)  # this job's id and kept columns


class _PartitionScorer:
    """The function ``mapInArrow`` runs on the executors: record batches in, scored batches out.
    A class, so that Spark pickles its few fields, not a closure over the driver's state."""

    def __init__(
        self,
        settings: Settings,
        options: BatchOptions,
        kind: str,
        fields: list[str],
        out_fields: list[str],
        counts: _Counts,
        typed: bool,
    ) -> None:
        self.settings = settings
        self.options = options
        self.kind = kind
        self.typed = typed
        self.fields = fields
        self.out_fields = out_fields
        self.read, self.written, self.skipped = counts.read, counts.written, counts.skipped
        self.failures, self.partitions = counts.failures, counts.partitions
        self.max_listed = MAX_LISTED_FAILURES  # read here, on the driver, where it may be set

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        try:
            scorer = _scorer_for(self.settings, self.options, self.typed)
        except ConfigurationError as exc:
            raise ConfigurationError(_INPUT_BAD.format(reason=exc)) from None
        position, listed = 0, 0
        for batch in batches:
            if not batch.num_rows:
                continue
            try:
                scored = reduce(ScoredChunk.then, scorer.score_all(self._rows(batch), position), _NOTHING)
            except ConfigurationError as exc:
                raise ConfigurationError(_INPUT_BAD.format(reason=exc)) from None
            if scored.failures:
                if self.options.on_error != "skip":
                    row, reason = scored.failures[0]
                    raise BatchFailed(_ROW_FAILED.format(partition=partition, position=row, reason=reason))
                room = max(0, self.max_listed - listed)
                self.failures.add([(partition, row, reason) for row, reason in scored.failures[:room]])
                listed += min(room, len(scored.failures))
                self.skipped.add(len(scored.failures))
            position += batch.num_rows
            if scored.num_rows:
                yield pa.RecordBatch.from_arrays(list(map(as_arrow, scored.columns)), names=self.out_fields)
            self.written.add(scored.num_rows)
        self.read.add(position)
        self.partitions.add({partition: position})

    def _rows(self, batch: Any) -> Iterator[Chunk | BadRow]:
        """The batch's rows as the local reader gives them: Arrow's columns, or for JSON Lines
        the cells ``json_lines`` makes of each line, with a ``BadRow`` for a line it cannot."""
        if self.kind == "csv":
            import pyarrow.compute as pc

            # Spark reads an empty CSV cell as null; the local reader, and so a kept column,
            # as the empty cell it is.
            yield self.fields, [pc.fill_null(column, "") for column in batch.columns]
            return
        if self.kind != "jsonl":
            yield self.fields, list(batch.columns)
            return
        lines = ((None, line or "") for line in batch.column(0).to_pylist())
        yield from json_lines(lines, self.fields, "input")


_NOTHING = ScoredChunk([], [], [])
