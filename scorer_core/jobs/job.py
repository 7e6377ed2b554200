"""``scorer batch``: a file or directory of rows scored in chunks, in this process, with the
HTTP API's own code for each chunk, so that a row gets the same answer either way.

Each chunk becomes the ``ScoreRequest`` a client would send (string cells, the id and kept
columns as ``includeFieldsInOutput``), then goes through ``prepare_score`` (typing and every
check), ``run_task`` (the runtime, with its row-count check) and ``score_body`` (the answer's
cells): the functions ``POST /model/score`` calls. For Parquet and JSON Lines, the answer's
columns are written in the model's declared types instead of as cells (``jobs.typed``). Memory
holds one chunk of input and its answer at a time (``--batch-rows``, default 50,000) plus the
model.

The output never replaces the input, however either is spelt (``jobs.outputs``), and is
written under no name until the job has succeeded, so a job that fails, is stopped or dies
leaves nothing, and never a file under the final name. Rows the model, the typing or the reader
refuse (a cell that does not parse, a row that is not UTF-8 or too long) stop the job
(``--on-error fail``, the default) or are written, with their row number and the reason, to
``<output>.errors.jsonl`` (``--on-error skip``).
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import orjson

from scorer_core.config.plugins import load_plugins
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError, InvalidRequest, ModelError, ScorerError
from scorer_core.execution.executors import load_runtime
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringTask, run_task
from scorer_core.headers import ForwardedHeaders
from scorer_core.jobs.outputs import StagedFile, check_targets
from scorer_core.jobs.typed import CONTRIBUTION_TYPE, input_column, typed_column, typed_outputs
from scorer_core.runtime import Contributions, Runtime
from scorer_core.schema import DataType, ShapleyType
from scorer_core.service.answers import contribution_body, score_body
from scorer_core.service.tasks import prepare_contribution, prepare_score
from scorer_core.tables.files import TableWriter, estimate_rows, format_of, open_writer, read_rows
from scorer_core.tables.rows import BadRow, Chunk
from scorer_core.wire.columns import Column, ColumnRows, frame_of_columns
from scorer_core.wire.contract import ContributionRequest, ScoreRequest

__all__ = [
    "BatchFailed",
    "BatchOptions",
    "BatchSummary",
    "ChunkScorer",
    "ScoredChunk",
    "Stopped",
    "failure_line",
    "load_model",
    "run_batch_job",
    "stopped_by_signals",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    model_path: Path
    #: Paths, or for the Spark engine also URIs Spark reads (``hdfs://``, ``s3a://``).
    input: Path | str
    output: Path | str
    runtime: str | None = None
    id_column: str | None = None
    keep_columns: tuple[str, ...] = ()
    contributions: ShapleyType = ShapleyType.NONE
    #: Rows per chunk and model call: measured on three models (docs/batch.md), 50,000 rows made a
    #: scikit-learn pipeline's fixed cost per call small beside its rows, for little more memory.
    batch_rows: int = 50_000
    on_error: str = "fail"


@dataclass
class BatchSummary:
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    seconds: float = 0.0
    #: The input's rows, when known before the end (``estimate_rows``); ``total_exact`` says
    #: whether counted (Parquet's footers) or estimated from the bytes of the first lines.
    rows_total: int | None = None
    total_exact: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


class BatchFailed(ScorerError):
    """A row the job could not score, with ``--on-error fail``."""

    @classmethod
    def at(cls, row: int, reason: str) -> BatchFailed:
        return cls(f"row {row} (counting from 0) cannot be scored: {reason}")


def run_batch_job(
    settings: Settings, options: BatchOptions, progress: Callable[[BatchSummary], None] | None = None
) -> BatchSummary:
    """Score ``options.input`` into ``options.output``; the summary of what was done."""
    source, output = Path(options.input), Path(options.output)
    kind = format_of(output, what="output")
    format_of(source, what="input")
    if options.batch_rows < 1:
        raise ConfigurationError("--batch-rows must be at least 1")
    skip = options.on_error == "skip"
    errors_path = output.with_name(output.name + ".errors.jsonl")
    check_targets(source, {"output": output, **({"side file of skipped rows": errors_path} if skip else {})})
    summary = BatchSummary()
    if progress is not None:
        summary.rows_total, summary.total_exact = estimate_rows(source) or (None, False)
    # The files first: a directory that cannot be written to is said before the model loads.
    with StagedFile(output) as staged, _side_file(errors_path, skip) as errors:
        scorer = ChunkScorer.load(settings, options, typed=kind != "csv")
        writer = open_writer(staged.handle, kind)
        try:
            _score_into(scorer, read_rows(source, options.batch_rows), writer, errors, summary, progress)
        except BaseException:
            with suppress(Exception):
                writer.close()  # its file is discarded; the writer only lets go of it
            raise
        finally:
            scorer.close()
        writer.close()
        staged.publish()
        if errors is not None and summary.rows_skipped:
            errors.publish()
        elif skip:
            errors_path.unlink(missing_ok=True)  # an earlier job's, about an output now replaced
    return summary


def _side_file(path: Path, wanted: bool) -> AbstractContextManager[StagedFile | None]:
    return StagedFile(path) if wanted else nullcontext()


def _score_into(
    scorer: ChunkScorer,
    rows: Iterable[Chunk | BadRow],
    writer: TableWriter,
    errors: StagedFile | None,
    summary: BatchSummary,
    progress: Callable[[BatchSummary], None] | None,
) -> None:
    """Each chunk scored and written, each failed row listed in ``errors`` (or, without it, the
    first one ends the job), ``summary`` kept up to date."""
    started = time.monotonic()
    for scored in scorer.score_all(rows):
        summary.rows_read += scored.num_rows + len(scored.failures)
        if scored.failures:
            if errors is None:
                raise BatchFailed.at(*scored.failures[0])
            errors.handle.writelines(failure_line(*failure) for failure in scored.failures)
            summary.rows_skipped += len(scored.failures)
        if scored.num_rows:
            writer.write(scored.fields, scored.columns)
            summary.rows_written += scored.num_rows
        summary.seconds = time.monotonic() - started
        if progress is not None:
            progress(summary)
    summary.seconds = time.monotonic() - started


def load_model(settings: Settings, options: BatchOptions) -> tuple[Runtime, ModelFacts]:
    """The job's model, loaded by the runtime its plugins pick for it (each engine's one way)."""
    plugins = load_plugins(settings)
    runtime_cls = plugins.runtime_to_load(options.model_path, options.runtime)
    runtime_cls.check_model(options.model_path)
    return load_runtime(runtime_cls, options.model_path, settings)


def failure_line(row: int, reason: str) -> bytes:
    """One line of ``<output>.errors.jsonl``, as both engines write it."""
    return orjson.dumps({"row": row, "error": reason}) + b"\n"


class ChunkScorer:
    """One loaded model scoring chunks of string cells as ``POST /model/score`` (or
    ``/model/contribution``) would: the unit both engines run, so that a row gets one answer
    whether the job runs here or on a Spark executor.

    ``typed``: the answer as Arrow columns of the model's declared types, and the copied
    columns in the input's (``jobs.typed``), for the formats that carry types; else the HTTP
    API's string cells, for CSV."""

    def __init__(
        self, runtime: Runtime, facts: ModelFacts, options: BatchOptions, *, typed: bool = False
    ) -> None:
        self.runtime = runtime
        self.facts = facts
        self.options = options
        self.typed = typed
        #: The id column, then the kept ones: copied first into every output row.
        self.copied = list(dict.fromkeys(c for c in (options.id_column, *options.keep_columns) if c))
        self._types = typed_outputs(facts.schema.outputs)

    @classmethod
    def load(cls, settings: Settings, options: BatchOptions, *, typed: bool = False) -> ChunkScorer:
        return cls(*load_model(settings, options), options, typed=typed)

    def output_type(self, name: str) -> DataType | None:
        """The declared type of an output column (contributions are floats); ``None`` for a
        column copied from the input, which keeps the input's type."""
        if name in self.copied:
            return None
        if self.options.contributions is not ShapleyType.NONE:
            return CONTRIBUTION_TYPE
        return self._types[name]

    def close(self) -> None:
        self.runtime.close()

    def check_columns(self, fields: Sequence[str]) -> None:
        """A column the job needs and the input lacks, or a column named twice, is the job's
        fault, not every row's: it stops the job at once (exit status 2) instead of failing each
        row in turn."""
        duplicates = sorted({name for name in fields if fields.count(name) > 1})
        if duplicates:
            # In the HTTP API's words for the same fields (service/tasks.py).
            raise ConfigurationError(
                f"the input's header has duplicate fields: {', '.join(map(repr, duplicates))}; "
                "which one a model input would take is not known"
            )
        missing = [c for c in self.copied if c not in fields]
        if missing:
            raise ConfigurationError(
                f"the input has no column {', '.join(map(repr, missing))} (--id-column, --keep-columns)"
            )
        absent = [spec.name for spec in self.facts.schema.inputs if spec.name not in fields]
        if absent:
            raise ConfigurationError(
                f"the input has no column for the model's input {', '.join(map(repr, absent))}; "
                f"it has {', '.join(map(repr, fields))}"
            )

    def score(self, fields: Sequence[str], columns: Sequence[Column], first_row: int) -> ScoredChunk:
        """A chunk's answer, and each row that failed (its number, counting ``first_row`` for
        the chunk's first, and why)."""
        self.check_columns(fields)
        names = list(fields)
        # The copied columns first, in the order asked for: score_body copies in field order.
        order = list(dict.fromkeys([*self.copied, *names]))
        rows = ColumnRows([columns[names.index(name)] for name in order])
        return self._score_chunk(order, rows, first_row)

    def score_all(self, rows: Iterable[Chunk | BadRow], first_row: int = 0) -> Iterator[ScoredChunk]:
        """Each chunk of ``rows`` scored, and each row the reader could not read as that row's
        failure, the rows numbered on from ``first_row`` (both engines score what they read so)."""
        for item in rows:
            if isinstance(item, BadRow):
                scored = ScoredChunk([], [], [(first_row, item.describe())])
            else:
                scored = self.score(*item, first_row)
            first_row += scored.num_rows + len(scored.failures)
            yield scored

    def output_fields(self, fields: Sequence[str]) -> list[str]:
        """The output's field names for an input of ``fields``, from scoring the model's own
        sample row: an engine that declares its output's schema before it reads a row (Spark)
        learns it the way a client would."""
        self.check_columns(fields)
        sample = dict(zip((f.name for f in self.facts.schema.inputs), self.facts.sample_row, strict=True))
        names = list(dict.fromkeys([*fields, *sample]))
        scored = self.score(names, [[sample.get(name, "")] for name in names], 0)
        if scored.failures:
            raise ConfigurationError(
                f"the model failed to score its own sample row, so the output's columns are unknown: "
                f"{scored.failures[0][1]}"
            )
        return scored.fields

    def _score_chunk(self, fields: list[str], rows: ColumnRows, first_row: int) -> ScoredChunk:
        try:
            return self._score(fields, rows)
        except (InvalidRequest, ModelError) as exc:  # a row's fault; anything else stops the job
            if len(rows) == 1:
                return ScoredChunk([], [], [(first_row, _row_reason(exc.detail))])
        # Some row failed: halves, down to the rows at fault (as the server isolates a bad request).
        middle = len(rows) // 2
        left = self._score_chunk(fields, rows[:middle], first_row)
        right = self._score_chunk(fields, rows[middle:], first_row + middle)
        return left.then(right)

    def _score(self, fields: list[str], rows: ColumnRows) -> ScoredChunk:
        copied, facts, runtime = self.copied, self.facts, self.runtime
        if self.options.contributions is ShapleyType.NONE:
            request = ScoreRequest.of_cells(fields, rows, copied or None)
            # The inputs typed from their columns, as build_frame types the same cells.
            frame = frame_of_columns(fields, rows.columns, facts.schema.inputs, facts.missing_values)
            prepared = prepare_score(request, facts, frame=frame)
            result = run_task(runtime, _task(prepared, outputs=True))
            if self.typed:  # score_body's columns, typed (a job sends no idField: none is generated)
                outputs = result.outputs or {}
                kept = [input_column(rows.columns[i]) for i in prepared.copied_positions]
                typed = [self._typed(name, values) for name, values in outputs.items()]
                return ScoredChunk([*prepared.copied_fields, *outputs], [*kept, *typed], [])
            body = score_body(facts.model_id, prepared, result, lazy=True)
            return ScoredChunk(body["fields"], body["score"].columns, [])
        request_c = ContributionRequest.model_validate(
            {"fields": fields, "rows": rows.as_lists(), "requestShapleyValueType": self.options.contributions}
        )
        prepared_c = prepare_contribution(request_c, facts)
        result = run_task(runtime, _task(prepared_c, outputs=False))
        assert result.contributions is not None
        if self.typed:
            names, floats = _contribution_arrays(result.contributions)
            kept_typed = [input_column(rows.columns[i]) for i in range(len(copied))]
            return ScoredChunk([*copied, *names], [*kept_typed, *floats], [])
        wire = contribution_body(result.contributions)
        names, values = _contribution_columns(wire)
        kept = [rows.cells(i) for i in range(len(copied))]  # the copied columns come first
        return ScoredChunk([*copied, *names], [*kept, *map(list, zip(*values, strict=True))], [])

    def _typed(self, name: str, values: np.ndarray) -> Any:
        """An output column in its declared type; values it cannot hold are the model's fault."""
        data_type = self._types[name]
        try:
            return typed_column(values, data_type)
        except ValueError as exc:
            raise ModelError(
                f"Runtime '{self.facts.runtime}' returned output '{name}' that is not {data_type.value}, "
                f"as the model's schema declares it: {exc}",
                runtime=self.facts.runtime,
            ) from None


#: A one-row request's own row number, which is always 0: in a job's message it would name a
#: second row beside the file's.
_ONE_ROW_REQUEST = re.compile(r"^(Invalid scoring request due to: )Row 0, ")


def _row_reason(detail: str) -> str:
    """Why a file's row failed, from the 400 or 500 its one-row request got."""
    return _ONE_ROW_REQUEST.sub(r"\1", detail, count=1)


@dataclass
class ScoredChunk:
    """A chunk's answer as columns (an engine writes columns): the contract's string cells, or
    typed Arrow arrays (``ChunkScorer.typed``); and the rows that failed: (row number, why)."""

    fields: list[str]
    columns: list[Column]
    failures: list[tuple[int, str]]

    @property
    def num_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def then(self, other: ScoredChunk) -> ScoredChunk:
        """This chunk's rows followed by ``other``'s."""
        if not self.columns:
            return ScoredChunk(other.fields or self.fields, other.columns, self.failures + other.failures)
        if not other.columns:
            return ScoredChunk(self.fields, self.columns, self.failures + other.failures)
        joined = [_joined(a, b) for a, b in zip(self.columns, other.columns, strict=True)]
        return ScoredChunk(self.fields, joined, self.failures + other.failures)


def _joined(first: Column, second: Column) -> Column:
    if isinstance(first, list):
        return first + second
    import pyarrow as pa

    return pa.concat_arrays([first, second])


def _task(prepared: Any, *, outputs: bool) -> ScoringTask:
    return ScoringTask(
        prepared.frame,
        ForwardedHeaders(),
        outputs=outputs,
        shapley=prepared.shapley,
        intervals=prepared.intervals,
    )


def _contribution_columns(wire: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One column per feature (per output group and feature when there are several groups)."""
    features: Sequence[str] = wire["features"]
    groups = wire["contributionGroups"]
    names = _contribution_names(features, [group.get("outputGroup") for group in groups])
    rows: list[list[str]] = [
        [cell for group in groups for cell in group["contributions"][i]]
        for i in range(len(groups[0]["contributions"]))
    ]
    return names, rows


def _contribution_names(features: Sequence[str], groups: Sequence[str | None]) -> list[str]:
    names: list[str] = []
    for group in groups:
        prefix = f"{group}." if len(groups) > 1 and group is not None else ""
        names.extend(prefix + f for f in features)
    return names


def _contribution_arrays(contributions: Contributions) -> tuple[list[str], list[Any]]:
    """``_contribution_columns``' columns as float arrays, named alike."""
    import pyarrow as pa

    groups = contributions.groups
    names = _contribution_names(contributions.features, [group.output_group for group in groups])
    width = len(contributions.features)
    arrays = [pa.array(np.asarray(g.values[:, j], dtype=np.float64)) for g in groups for j in range(width)]
    return names, arrays


class Stopped(KeyboardInterrupt):
    """The job was stopped by a signal (SIGTERM, SIGHUP): raised where the job is, as Ctrl-C's
    ``KeyboardInterrupt`` is, so that the same clean-up runs and the command ends the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stopped_by_signals(signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within, ``signums`` raise ``Stopped`` in the main thread instead of ending the process
    where it stands. A second signal ends it at once (the clean-up may itself be stuck). A
    signal ignored (``nohup``) stays ignored. Outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    taken = [signum for signum in signums if signal.getsignal(signum) is signal.SIG_DFL]

    def stop(signum: int, frame: FrameType | None) -> None:
        for each in taken:
            signal.signal(each, signal.SIG_DFL)
        raise Stopped(signum)

    for signum in taken:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum in taken:
            signal.signal(signum, signal.SIG_DFL)


def print_progress(stream: Any = sys.stderr) -> Callable[[BatchSummary], None]:
    """A progress line: rewritten in place on a terminal, a log line every 10 s otherwise."""
    last = [0.0]
    terminal = stream.isatty()

    def show(summary: BatchSummary) -> None:
        line = progress_line(summary)
        if terminal:
            stream.write("\r" + line + "\x1b[K")  # erase what a longer line left
            stream.flush()
        elif summary.seconds - last[0] >= 10:
            last[0] = summary.seconds
            log.info("Scored %s", line)

    return show


def progress_line(summary: BatchSummary) -> str:
    """Rows done (of how many, when known), rows/s, and the time left at that pace."""
    done = f"{summary.rows_read:,}"
    total = summary.rows_total
    left = ""
    if total:
        total = max(total, summary.rows_read)  # an estimate can fall short
        about = "" if summary.total_exact else "about "
        done += f" of {about}{total:,} rows ({summary.rows_read / total:.0%})"
        if summary.rows_per_second:
            left = f", {_duration((total - summary.rows_read) / summary.rows_per_second)} left"
    else:
        done += " rows"
    line = f"{done}, {summary.rows_per_second:,.0f} rows/s, {summary.seconds:.0f} s{left}"
    if summary.rows_skipped:
        line += f", {summary.rows_skipped:,} skipped"
    return line


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
