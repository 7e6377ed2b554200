"""Reading and writing tables in chunks: CSV, Parquet and JSON Lines, each as a file or a
directory of parts, so that ``scorer batch`` holds one chunk at a time whatever the file's size.

Every cell is read as the contract's string, since the HTTP API types string cells and batch
scoring must type them the same way (``service/tasks.prepare_score``): CSV cells as written,
Parquet and JSON values written as a client would send them (``None`` as the empty cell, floats
with ``repr``, booleans ``true``/``false``). What is written is a job's columns: the HTTP API's
string cells, or Arrow arrays of any type (``jobs.typed``), which Parquet keeps and JSON Lines
writes as JSON's own numbers, booleans and strings (``_json_values``).
"""

from __future__ import annotations

import base64
import dataclasses
import decimal
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

import orjson

from scorer_core.errors import ConfigurationError, InvalidRequest
from scorer_core.tables.rows import MAX_ROW_BYTES, BadRow, Chunk, bounded_lines, csv_rows, too_long
from scorer_core.wire.columns import Column, cell_of, cells
from scorer_core.wire.deadline import checkpoint

__all__ = [
    "FORMATS",
    "SERVED_FORMATS",
    "BadRow",
    "FileTooLarge",
    "ReadLimits",
    "TableWriter",
    "as_arrow",
    "estimate_rows",
    "format_of",
    "json_fields",
    "json_lines",
    "open_writer",
    "part_formats",
    "read_chunks",
    "read_rows",
    "read_table",
    "read_whole",
]

#: ``.json`` is read as JSON Lines too: it is how Spark names the parts of a JSON output. (Not
#: by ``GET /model/score?file=``, where a ``.json`` file is more likely a JSON document.)
FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

SERVED_FORMATS = {suffix: kind for suffix, kind in FORMATS.items() if suffix != ".json"}


def format_of(path: Path, *, what: str) -> str:
    """The format of a file, or of the parts of a directory, by extension."""
    if path.is_dir():
        kinds = part_formats(p.name for p in _parts(path))
        if len(kinds) != 1:
            raise ConfigurationError(
                f"{what} directory '{path}' holds {'no' if not kinds else 'mixed'} parts of a known format "
                f"({', '.join(sorted(FORMATS))})"
            )
        return kinds.pop()
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise ConfigurationError(
            f"{what} '{path}': unknown format '{path.suffix}'; use one of {', '.join(sorted(FORMATS))}"
        )
    return found


def part_formats(names: Iterable[str]) -> set[str]:
    """The known formats among a directory's parts, by their names; names that start with
    ``_`` or ``.`` (Spark's ``_SUCCESS``, hidden files) are no parts."""
    suffixes = (Path(name).suffix.lower() for name in names if not name.startswith((".", "_")))
    return {FORMATS[suffix] for suffix in suffixes if suffix in FORMATS}


def _parts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def read_rows(path: Path, rows: int) -> Iterator[Chunk | BadRow]:
    """(field names, columns of string cells) in chunks of at most ``rows`` rows, and in the
    place of each row that cannot be read (``tables.rows``), a ``BadRow`` naming it: a batch
    job fails or skips it as it does a row the model refuses."""
    kind = format_of(path, what="input")
    readers: dict[str, Callable[[Path, int], Iterator[Chunk | BadRow]]] = {
        "csv": _csv_rows,
        "parquet": _parquet,
        "jsonl": _jsonl_rows,
    }
    if not path.is_dir():
        yield from readers[kind](path, rows)
        return
    for file in _parts(path):
        if FORMATS.get(file.suffix.lower()) == kind:
            for item in readers[kind](file, rows):
                yield dataclasses.replace(item, file=file.name) if isinstance(item, BadRow) else item


def read_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    """``read_rows``, for readers that take the file whole or not at all: the first row that
    cannot be read ends it (``ConfigurationError``)."""
    return _unless_bad(read_rows(path, rows), f"input '{path}'")


def _unless_bad(rows: Iterable[Chunk | BadRow], source: str) -> Iterator[Chunk]:
    for item in rows:
        if isinstance(item, BadRow):
            raise ConfigurationError(f"{source} {item.describe()}")
        yield item


def _named(source: Path | BinaryIO) -> str:
    return f"input '{source}'" if isinstance(source, Path) else "input"


def estimate_rows(path: Path, sample_bytes: int = 1 << 20) -> tuple[int, bool] | None:
    """How many rows the input holds, and whether that is exact: Parquet's footers count them;
    for CSV and JSON Lines, the size over the bytes per line of the first MiB (an estimate, for
    the progress line's time left). ``None`` when it cannot tell."""
    kind = format_of(path, what="input")
    files = [f for f in (_parts(path) if path.is_dir() else [path]) if FORMATS.get(f.suffix.lower()) == kind]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files), True
    sizes = [f.stat().st_size for f in files]
    if not files or not sum(sizes):
        return None
    with open(files[0], "rb") as handle:
        head = handle.read(sample_bytes)
    lines = head.count(b"\n")
    if not lines:
        return None
    headers = len(files) if kind == "csv" else 0
    return max(0, round(sum(sizes) * lines / len(head)) - headers), False


class FileTooLarge(InvalidRequest):
    status_code = 413


@dataclass(frozen=True)
class ReadLimits:
    """How much one file scored over HTTP may hold once decoded, since a few KiB on disk can
    decode to millions of rows (a dictionary, a compressed page). ``decoded_bytes`` counts what
    a POST of the same rows would send: each cell's bytes (a number's width) plus 3, and 3 a
    row; the settings that set each are named in the 413."""

    rows: int
    decoded_bytes: int
    rows_setting: str = "SCORER_FILE_MAX_ROWS"
    bytes_setting: str = "SCORER_FILE_MAX_DECODED_BYTES"


#: Cells decoded at a time from a Parquet file: one batch's Python strings stay tens of MB.
BATCH_CELLS = 1 << 18


def read_whole(path: Path) -> tuple[list[str], list[list[str]]]:
    """Every row of one file, as the contract's string cells, unbounded (for tests and tools)."""
    with open(path, "rb") as handle:
        return read_table(handle, format_of(path, what="input"), path.name)


def read_table(
    handle: BinaryIO, kind: str, name: str, limits: ReadLimits | None = None
) -> tuple[list[str], list[list[str]]]:
    """Every row of an open file of ``kind``, as the contract's string cells (for ``GET
    /model/score?file=``, which opens the file once, safely: ``server/files``). Only ``handle``
    is read, and errors name the file as ``name``, never where the server keeps it.

    Within ``limits``, or a 413 naming the setting: Parquet's footer counts are checked before
    anything is decoded, and each batch is counted before its cells become Python strings.
    Batches end at ``checkpoint``, so the reading stops at the request's deadline.
    """
    import pyarrow as pa

    fields: list[str] = []
    rows: list[list[str]] = []
    decoded = 0
    try:
        chunks = (
            _bounded_parquet(handle, name, limits)
            if kind == "parquet"
            else {"csv": _csv, "jsonl": _jsonl}[kind](handle, 65_536)
        )
        for names, columns in chunks:
            checkpoint()
            fields = names
            count = len(columns[0]) if columns else 0
            if limits is not None:
                if len(rows) + count > limits.rows:
                    raise FileTooLarge(
                        f"file {name!r} holds more than {limits.rows} rows ({limits.rows_setting})"
                    )
                decoded += _decoded_bytes(columns, count)
                if decoded > limits.decoded_bytes:
                    raise _over_bytes(name, limits)
            rows.extend(map(list, zip(*(cells(_plain(c)) for c in columns), strict=True)))
    except (ConfigurationError, pa.ArrowException) as exc:
        # The client's file, not the operator's setting: a 400 that names the file.
        reason = str(exc).removeprefix("input ")
        raise InvalidRequest(f"file {name!r} cannot be read: {reason}") from None
    except TypeError as exc:  # orjson.JSONEncodeError: a JSON Lines value nested too deep to write as a cell
        if kind != "jsonl":
            raise
        raise InvalidRequest(f"file {name!r} cannot be read: a value cannot be a cell ({exc})") from None
    return fields, rows


def _over_bytes(name: str, limits: ReadLimits) -> FileTooLarge:
    return FileTooLarge(
        f"file {name!r} decodes to more than {limits.decoded_bytes} bytes ({limits.bytes_setting})"
    )


def _bounded_parquet(handle: BinaryIO, name: str, limits: ReadLimits | None) -> Iterator[Chunk]:
    """A Parquet file's batches, refused first by what its footer says it holds: its rows, its
    values (each decodes to a byte at least) and its pages' uncompressed size. Text columns are
    read as dictionaries, so one long value repeated is not copied per row before it is counted."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(handle)
    meta = file.metadata
    if limits is not None:
        if meta.num_rows > limits.rows:
            raise FileTooLarge(
                f"file {name!r} holds {meta.num_rows} rows, more than {limits.rows} ({limits.rows_setting})"
            )
        groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
        chunks = [group.column(c) for group in groups for c in range(meta.num_columns)]
        values = sum(chunk.num_values for chunk in chunks)
        if max(values, sum(chunk.total_uncompressed_size for chunk in chunks)) > limits.decoded_bytes:
            raise _over_bytes(name, limits)
    schema = file.schema_arrow
    text = [field.name for field in schema if _is_text(field.type)]
    file = pq.ParquetFile(handle, metadata=meta, read_dictionary=text)
    for batch in file.iter_batches(batch_size=max(1, BATCH_CELLS // max(1, len(schema)))):
        yield schema.names, list(batch.columns)


def _decoded_bytes(columns: Sequence[Column], rows: int) -> int:
    """What ``columns`` hold as a POST body would carry them (``ReadLimits``), from Arrow's
    lengths alone: nothing is decoded to count it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 3 * rows * (len(columns) + 1)
    for column in columns:
        if isinstance(column, list):
            total += sum(map(len, column))
            continue
        encoded = pa.types.is_dictionary(column.type)
        values = column.dictionary if encoded else column
        if _is_text(values.type):
            lengths = pc.binary_length(values)
            total += pc.sum(pc.take(lengths, column.indices) if encoded else lengths).as_py() or 0
        elif encoded:  # as wide as its widest value, for each row
            total += len(column) * -(-values.nbytes // max(1, len(values)))
        else:
            total += column.nbytes
    return total


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return any(
        check(kind)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
        )
    )


def _plain(column: Column) -> Column:
    """A dictionary column decoded (once counted, so within the limits)."""
    dictionary = getattr(column, "dictionary_decode", None)
    return dictionary() if dictionary is not None else column


def _opened(source: Path | BinaryIO) -> AbstractContextManager[IO[bytes]]:
    """``source`` opened, or as it is when it is open already (its owner closes it)."""
    return open(source, "rb") if isinstance(source, Path) else nullcontext(source)


def _csv(source: Path | BinaryIO, rows: int) -> Iterator[Chunk]:
    return _unless_bad(_csv_rows(source, rows), _named(source))


def _csv_rows(source: Path | BinaryIO, rows: int) -> Iterator[Chunk | BadRow]:
    with _opened(source) as handle:
        yield from csv_rows(handle, rows, _named(source))


def _parquet(path: Path, rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    for batch in file.iter_batches(batch_size=rows):
        yield names, list(batch.columns)  # typed; wire.columns reads them as cells


def _jsonl(source: Path | BinaryIO, rows: int) -> Iterator[Chunk]:
    return _unless_bad(_jsonl_rows(source, rows), _named(source))


def _jsonl_rows(source: Path | BinaryIO, rows: int) -> Iterator[Chunk | BadRow]:
    names: list[str] | None = None
    with _opened(source) as handle:
        numbered = bounded_lines(handle)
        while block := list(itertools.islice(numbered, rows)):
            for item in json_lines(block, names, _named(source)):
                if not isinstance(item, BadRow):
                    names = item[0]
                yield item


def json_lines(
    lines: Iterable[tuple[int | None, bytes | str]], names: list[str] | None, source: str
) -> Iterator[tuple[list[str], list[list[str]]] | BadRow]:
    """Numbered JSON Lines as (field names, columns of cells), in runs of good lines, with a
    ``BadRow`` in the place of each line that cannot be a row (not a JSON object, not UTF-8,
    longer than ``MAX_ROW_BYTES``, a value nested deeper than a cell can be written). The first
    object's keys name the fields unless ``names`` does; a first line that cannot is the
    input's fault (``json_fields``). Blank lines are no rows. Both engines read JSON Lines with
    it (Spark without line numbers)."""
    run: list[list[str]] = []
    for number, line in lines:
        if not line.strip():
            continue
        if names is None:
            names = json_fields(number, line, source)
        record = _json_object(line)
        if isinstance(record, dict):
            try:
                run.append([cell_of(record.get(name)) for name in names])
                continue
            except orjson.JSONEncodeError as exc:  # orjson writes 254 levels, reads 1024
                record = f"holds a value nested too deeply to be a cell ({exc})"
        if run:
            yield names, [list(column) for column in zip(*run, strict=True)]
            run = []
        yield BadRow(record, number)
    if run and names:
        yield names, [list(column) for column in zip(*run, strict=True)]


def json_fields(number: int | None, line: bytes | str, source: str) -> list[str]:
    """The field names a JSON Lines input's first line gives: its object's keys. A first line
    that is no object leaves the fields unknown: the input cannot be read (``ConfigurationError``
    naming ``source`` and the line)."""
    record = _json_object(line)
    if not isinstance(record, dict):
        raise ConfigurationError(f"{source} line {number} {record}")
    return list(record)


def _json_object(line: bytes | str) -> dict[str, Any] | str:
    """The line's object, or why it is none."""
    if len(line) > MAX_ROW_BYTES:
        return too_long()
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"is not JSON: {exc}"
    return record if isinstance(record, dict) else "is not a JSON object"


class TableWriter(Protocol):
    def write(self, fields: Sequence[str], columns: Sequence[Column]) -> None: ...

    def close(self) -> None: ...


def open_writer(sink: BinaryIO, kind: str) -> TableWriter:
    """A writer of columns (string cells, or Arrow arrays) to ``sink``, an open file, in
    ``kind``: the caller decides where it lies and under which name it appears
    (``jobs.outputs``), and closes it. The first chunk's types are the file's: a later chunk is
    cast to them, or refused (``ConfigurationError``)."""
    writers: dict[str, Callable[[BinaryIO], TableWriter]] = {
        "csv": _csv_writer,
        "parquet": _parquet_writer,
        "jsonl": _JsonlWriter,
    }
    return writers[kind](sink)


def as_arrow(column: Column) -> Any:
    """A column as an Arrow array: string cells as strings, an Arrow array as it is."""
    import pyarrow as pa

    return pa.array(column, pa.string()) if isinstance(column, list) else column


def _table(fields: Sequence[str], columns: Sequence[Column]) -> Any:
    import pyarrow as pa

    return pa.table({name: as_arrow(column) for name, column in zip(fields, columns, strict=True)})


def _conformed(table: Any, schema: Any) -> Any:
    """``table`` in the file's types; a column whose type changed in a way that cannot be cast
    (an input's parts that disagree on a kept column) stops the job, naming it."""
    import pyarrow as pa

    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        changed = [
            f"'{name}' ({schema.field(name).type}, then {table.schema.field(name).type})"
            for name in schema.names
            if schema.field(name).type != table.schema.field(name).type
        ]
        raise ConfigurationError(
            f"the output's columns change type between chunks of the input: {', '.join(changed)}; "
            "every part of a directory must give a kept column one type"
        ) from None


class _ArrowWriter:
    """Writes each chunk as an Arrow table, with the writer ``open_arrow(sink, schema)`` makes
    from the first chunk's schema (pyarrow's CSV and Parquet writers alike; neither closes the
    sink). No chunk: an empty file."""

    def __init__(self, sink: BinaryIO, open_arrow: Callable[[BinaryIO, Any], Any]) -> None:
        self._sink = sink
        self._open = open_arrow
        self._writer: Any = None
        self._schema: Any = None

    def write(self, fields: Sequence[str], columns: Sequence[Column]) -> None:
        table = _table(fields, columns)
        if self._writer is None:
            self._schema = table.schema
            self._writer = self._open(self._sink, table.schema)
        elif table.schema != self._schema:
            table = _conformed(table, self._schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _csv_writer(sink: BinaryIO) -> TableWriter:
    import pyarrow.csv as pc

    return _ArrowWriter(sink, pc.CSVWriter)


def _parquet_writer(sink: BinaryIO) -> TableWriter:
    import pyarrow.parquet as pq

    return _ArrowWriter(sink, pq.ParquetWriter)


class _JsonlWriter:
    def __init__(self, sink: BinaryIO) -> None:
        self._handle = sink

    def write(self, fields: Sequence[str], columns: Sequence[Column]) -> None:
        rows = zip(*map(_json_values, columns), strict=True)
        self._handle.write(
            b"".join(
                orjson.dumps(dict(zip(fields, row, strict=True)), default=_json_default) + b"\n"
                for row in rows
            )
        )

    def close(self) -> None:
        self._handle.flush()


#: Floats JSON has no number for, spelt as H2O's cells and Spark's JSON writer spell them.
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _json_values(column: Column) -> list[Any]:
    """A column's values as JSON Lines carries them, the same on both engines (Spark's JSON
    writer is told the same formats): numbers as JSON numbers (a float32 as its shortest
    digits, not its float64 widening), except NaN and the infinities, which JSON cannot write,
    as the strings ``NaN``, ``Infinity`` and ``-Infinity``; times as ISO 8601 text to the
    microsecond, in UTC with a ``Z`` when they have a zone; nulls as ``null``."""
    if isinstance(column, list):
        return column
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    values: list[Any]
    if pa.types.is_timestamp(kind):
        # In UTC (Arrow's strftime writes a time in its own zone); %S holds the microseconds.
        zoned = kind.tz is not None
        times = column.cast(pa.timestamp("us", "UTC" if zoned else None), safe=False)
        values = pc.strftime(times, format="%Y-%m-%dT%H:%M:%S" + ("Z" if zoned else "")).to_pylist()
        return values
    if not pa.types.is_floating(kind) or kind == pa.float64():
        values = column.to_pylist()
        if not pa.types.is_floating(kind):
            return values
    else:
        # Arrow writes a float32 with the fewest digits that read back as it (0.1, not
        # 0.10000000149011612), as the HTTP API's cells and Spark's JSON writer do.
        values = [None if v is None else float(v) for v in column.cast(pa.string()).to_pylist()]
    if pc.all(pc.is_finite(column)).as_py() is False:
        values = [v if v is None or math.isfinite(v) else _non_finite(v) for v in values]
    return values


def _non_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else _NON_FINITE[value]


def _json_default(value: Any) -> Any:
    """Values orjson does not write, from an input's kept columns: decimals as JSON numbers,
    bytes as base64 (as Spark writes them), anything else as its text."""
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return str(value)
