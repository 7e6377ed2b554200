"""Reading and writing tables in chunks: CSV, Parquet and JSON Lines, each as a file or a
directory of parts, so that ``scorer batch`` holds one chunk at a time whatever the file's size.

Every cell is read as the contract's string, since the HTTP API types string cells and batch
scoring must type them the same way (``server/requests.prepare_score``): CSV cells as written,
Parquet and JSON values written as a client would send them (``None`` as the empty cell, floats
with ``repr``, booleans ``true``/``false``). What is written is the HTTP API's answer: strings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from scorer_core.errors import ConfigurationError, InvalidRequest
from scorer_core.wire.columns import Column, cell_of, cells

__all__ = [
    "FORMATS",
    "SERVED_FORMATS",
    "FileTooLarge",
    "TableWriter",
    "allowed_file",
    "estimate_rows",
    "format_of",
    "json_lines",
    "open_writer",
    "part_formats",
    "read_chunks",
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

#: Field names and one column of cells per field: a list of strings, or an Arrow array
#: (``wire.columns``), so that a job types columns without a Python object per cell.
Chunk = tuple[list[str], list[Column]]

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


def read_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    """(field names, columns of string cells) in chunks of at most ``rows`` rows."""
    kind = format_of(path, what="input")
    files = _parts(path) if path.is_dir() else [path]
    for file in files:
        if FORMATS.get(file.suffix.lower()) != kind:
            continue
        yield from {"csv": _csv, "parquet": _parquet, "jsonl": _jsonl}[kind](file, rows)


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


def allowed_file(directory: Path, name: str, max_bytes: int) -> Path:
    """``name`` inside ``directory``, a file of a known format of at most ``max_bytes``; else a
    400 (or 413 for the size) naming why.

    Only paths relative to the directory are taken, and only when they still lie inside it once
    every symlink is followed: ``..``, absolute paths and links out are refused alike.
    """
    if name.startswith(("/", "\\")) or Path(name).is_absolute():
        raise InvalidRequest("file must be a path relative to SCORER_FILE_SCORING_DIR, not an absolute one")
    root = directory.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise InvalidRequest(f"file {name!r} is outside SCORER_FILE_SCORING_DIR")
    if not path.is_file():
        raise InvalidRequest(f"file {name!r} does not exist in SCORER_FILE_SCORING_DIR")
    if path.suffix.lower() not in SERVED_FORMATS:
        raise InvalidRequest(f"file {name!r}: unknown format; use one of {', '.join(sorted(SERVED_FORMATS))}")
    if path.stat().st_size > max_bytes:
        raise FileTooLarge(f"file {name!r} is larger than SCORER_MAX_REQUEST_BYTES ({max_bytes} bytes)")
    return path


class FileTooLarge(InvalidRequest):
    status_code = 413


def read_whole(path: Path) -> tuple[list[str], list[list[str]]]:
    """Every row of one file, as the contract's string cells (for ``GET /model/score?file=``)."""
    import pyarrow as pa

    fields: list[str] = []
    rows: list[list[str]] = []
    try:
        for names, columns in read_chunks(path, 65_536):
            fields = names
            rows.extend(map(list, zip(*map(cells, columns), strict=True)))
    except (ConfigurationError, pa.ArrowInvalid) as exc:
        # The client's file, not the operator's setting: a 400 that names the file, not where
        # the server keeps it.
        reason = str(exc).replace(f"input '{path}' ", "").replace(str(path), path.name)
        raise InvalidRequest(f"file {path.name!r} cannot be read: {reason}") from None
    return fields, rows


def _csv(path: Path, rows: int) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.csv as pc

    with open(path, "rb") as handle:
        header = handle.readline()
    names = pc.read_csv(
        pa.py_buffer(header), read_options=pc.ReadOptions(autogenerate_column_names=False)
    ).column_names
    reader = pc.open_csv(
        path,
        read_options=pc.ReadOptions(block_size=1 << 22),
        convert_options=pc.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    # Arrow's string arrays, sliced to chunks without copying: a cell becomes a Python string
    # only if the job reads it as one (wire.columns).
    pending: list[Any] = []
    held = 0
    for batch in reader:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield names, [column.combine_chunks() for column in table.slice(0, rows).columns]
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if names and held:
        yield names, [column.combine_chunks() for column in pa.Table.from_batches(pending).columns]


def _parquet(path: Path, rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    for batch in file.iter_batches(batch_size=rows):
        yield names, list(batch.columns)  # typed; wire.columns reads them as cells


def _jsonl(path: Path, rows: int) -> Iterator[Chunk]:
    names: list[str] | None = None
    with open(path, "rb") as handle:
        numbered = enumerate(handle, 1)
        while block := list(itertools.islice(numbered, rows)):
            names, columns = json_lines(block, names, f"input '{path}'")
            if columns and columns[0]:
                yield names, columns


def json_lines(
    lines: Iterable[tuple[int, bytes | str]], names: list[str] | None, source: str
) -> tuple[list[str], list[list[str]]]:
    """Numbered JSON Lines as (field names, columns of cells): the first object's keys name
    the fields unless ``names`` does; blank lines are skipped; a line that is not a JSON object
    is the input's fault (``ConfigurationError``, naming ``source`` and the line). Both engines
    read JSON Lines with it."""
    records: list[dict[str, Any]] = []
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(f"{source} line {number} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ConfigurationError(f"{source} line {number} is not a JSON object")
        if names is None:
            names = list(record)
        records.append(record)
    if names is None:
        return [], []
    return names, [[cell_of(record.get(name)) for record in records] for name in names]


class TableWriter(Protocol):
    def write(self, fields: Sequence[str], columns: Sequence[Sequence[str]]) -> None: ...

    def close(self) -> None: ...


def open_writer(path: Path, kind: str) -> TableWriter:
    """A writer of string columns to ``path`` (a file) in ``kind``."""
    writers: dict[str, Callable[[Path], TableWriter]] = {
        "csv": _csv_writer,
        "parquet": _parquet_writer,
        "jsonl": _JsonlWriter,
    }
    return writers[kind](path)


def _table(fields: Sequence[str], columns: Sequence[Sequence[str]]) -> Any:
    import pyarrow as pa

    return pa.table(
        {name: pa.array(column, pa.string()) for name, column in zip(fields, columns, strict=True)}
    )


class _ArrowWriter:
    """Writes each chunk as an Arrow table, with the writer ``open_arrow(path, schema)`` makes
    from the first chunk's schema (pyarrow's CSV and Parquet writers alike)."""

    def __init__(self, path: Path, open_arrow: Callable[[str, Any], Any], empty: bytes = b"") -> None:
        self._path = path
        self._open = open_arrow
        self._empty = empty
        self._writer: Any = None

    def write(self, fields: Sequence[str], columns: Sequence[Sequence[str]]) -> None:
        table = _table(fields, columns)
        if self._writer is None:
            self._writer = self._open(str(self._path), table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self._path.write_bytes(self._empty)


def _csv_writer(path: Path) -> TableWriter:
    import pyarrow.csv as pc

    return _ArrowWriter(path, pc.CSVWriter)


def _parquet_writer(path: Path) -> TableWriter:
    import pyarrow.parquet as pq

    return _ArrowWriter(path, pq.ParquetWriter)


class _JsonlWriter:
    def __init__(self, path: Path) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115 (closed by close())

    def write(self, fields: Sequence[str], columns: Sequence[Sequence[str]]) -> None:
        rows = zip(*columns, strict=True)
        self._handle.write(
            b"".join(orjson.dumps(dict(zip(fields, row, strict=True))) + b"\n" for row in rows)
        )

    def close(self) -> None:
        self._handle.close()
