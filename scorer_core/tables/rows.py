"""Rows of CSV and JSON Lines files, each held to a bounded size, and a row that cannot be read
reported in its place (``BadRow``) instead of ending the read.

A batch job's input is not always well made: a cell of ten million characters, bytes that are
not UTF-8, a line with a cell too few. Such a row is that row's fault, like a cell that does not
parse as the model's type, so the job treats it the same way: it stops, naming the row, or with
``--on-error skip`` it lists the row in its side file and goes on. The readers therefore yield a
``BadRow`` where the row would be, and never hold more than ``MAX_ROW_BYTES`` of one row, so a
file with a gigabyte-long line cannot take the job's memory.

CSV is read by pyarrow's streaming reader, which is fast but fails a whole block for one bad
row and cannot go on. When it fails, the rows from where that read began are read again one at
a time by Python's ``csv`` module (the same quoting rules), which finds the rows at fault and
their lines; once a stretch of rows after the last bad one reads cleanly, pyarrow takes over
again from there. A good file is read by pyarrow alone, as before.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import os
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO, Any

from scorer_core.errors import ConfigurationError
from scorer_core.wire.columns import Column

__all__ = ["MAX_ROW_BYTES", "BadRow", "CappedFile", "Chunk", "bounded_lines", "csv_rows", "too_long"]

#: The most bytes one row may take in a file: a CSV record or a JSON line, its line end included.
#: pyarrow's CSV reader never read a longer one (it is its block), so no file that was read
#: before is refused now.
MAX_ROW_BYTES = 4 << 20
#: pyarrow's CSV block: the bytes it parses at once, and the stretch of clean rows the careful
#: reader reads before handing back to it.
BLOCK_BYTES = 4 << 20

#: Field names and one column of cells per field: a list of strings, or an Arrow array
#: (``wire.columns``), so that a job types columns without a Python object per cell.
Chunk = tuple[list[str], list[Column]]


@dataclass(frozen=True)
class BadRow:
    """A row of the input that could not be made into cells, in the place of that row: why
    (a phrase that follows "line N" or "the row"), its line in the file when known, and which
    file when the input is a directory of parts."""

    reason: str
    line: int | None = None
    file: str | None = None

    def describe(self) -> str:
        where = f"line {self.line}" if self.line is not None else "the row"
        return f"{where}{f' of {self.file!r}' if self.file else ''} {self.reason}"


def too_long() -> str:
    return f"is longer than {MAX_ROW_BYTES >> 20} MiB, the most a row may take"


def bounded_lines(handle: IO[bytes], first: int = 1) -> Iterator[tuple[int, bytes]]:
    """Each line of ``handle`` with its number. A line longer than ``MAX_ROW_BYTES`` comes cut
    to ``MAX_ROW_BYTES + 1`` bytes, the rest read and dropped, so that its reader can tell it
    was too long without it ever being held whole."""
    for number in itertools.count(first):
        line = handle.readline(MAX_ROW_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_ROW_BYTES and not line.endswith(b"\n"):
            _skip_line(handle)
        yield number, line


def _skip_line(handle: IO[bytes]) -> None:
    while (piece := handle.readline(1 << 20)) and not piece.endswith(b"\n"):
        pass


def csv_rows(handle: IO[bytes], rows: int, source: str) -> Iterator[Chunk | BadRow]:
    """A CSV file's rows in chunks of at most ``rows``, every cell a string as written, and a
    ``BadRow`` in the place of each row that cannot be read. ``handle`` must be seekable."""
    import pyarrow as pa
    import pyarrow.csv as pc

    header = handle.readline(MAX_ROW_BYTES + 1)
    if len(header) > MAX_ROW_BYTES:
        raise ConfigurationError(f"{source}: its header line {too_long()}")
    if not header.strip():
        return
    try:
        names: list[str] = pc.read_csv(
            pa.py_buffer(header), read_options=pc.ReadOptions(autogenerate_column_names=False)
        ).column_names
    except pa.ArrowInvalid as exc:
        raise ConfigurationError(f"{source}: its header line cannot be read: {exc}") from None
    at: _At | None = _At(offset=len(header), line=2)
    while at is not None:
        at = yield from _fast(handle, names, rows, at)
        if at is not None:
            at = yield from _careful(handle, names, rows, at)


@dataclass(frozen=True)
class _At:
    """Where a read begins: a row's first byte and line, and how many rows from there were
    already read (by pyarrow, before it failed)."""

    offset: int
    line: int
    done: int = 0


def _fast(handle: IO[bytes], names: list[str], rows: int, at: _At) -> Generator[Chunk, None, _At | None]:
    """pyarrow's streaming reader from ``at``: the rows, in chunks, and where to read again
    carefully if it failed (``None`` at the end of the file)."""
    import pyarrow as pa
    import pyarrow.csv as pc

    source = _Reads(handle.fileno(), at.offset, _end_of(handle))
    # Arrow's string arrays, sliced to chunks without copying: a cell becomes a Python string
    # only if the job reads it as one (wire.columns).
    pending: list[Any] = []
    held = done = 0
    failed = False
    try:
        reader = pc.open_csv(
            source,
            read_options=pc.ReadOptions(block_size=BLOCK_BYTES, column_names=names),
            convert_options=pc.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            pending.append(batch)
            held += batch.num_rows
            while held >= rows:
                table = pa.Table.from_batches(pending)
                yield names, [column.combine_chunks() for column in table.slice(0, rows).columns]
                done += rows
                rest = table.slice(rows)
                pending, held = rest.to_batches(), rest.num_rows
    except pa.ArrowInvalid:  # a row it cannot read, somewhere in the block after those it gave
        failed = True
    finally:
        source.stop()
    if held:
        yield names, [column.combine_chunks() for column in pa.Table.from_batches(pending).columns]
        done += held
    return _At(at.offset, at.line, done) if failed else None


def _careful(
    handle: IO[bytes], names: list[str], rows: int, at: _At
) -> Generator[Chunk | BadRow, None, _At | None]:
    """Python's reader from ``at``, past the rows already read, one row at a time: good rows in
    chunks, a ``BadRow`` for each bad one, until ``2 * BLOCK_BYTES`` are read and the last
    ``BLOCK_BYTES`` of them cleanly (then where pyarrow takes over), or the end (``None``)."""
    # The module's own limit on a field (128 KiB) is lower than a row's: raised, never lowered.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_BYTES))
    handle.seek(at.offset)
    records = _Records(handle, at.offset, at.line)
    for _ in range(at.done):
        records.next(len(names))
    start = clean_since = records.offset
    good: list[list[str]] = []
    while True:
        handing_over = (
            records.offset - start >= 2 * BLOCK_BYTES and records.offset - clean_since >= BLOCK_BYTES
        )
        record = None if handing_over else records.next(len(names))
        if isinstance(record, list):
            good.append(record)
            if len(good) < rows:
                continue
        if good:
            yield names, [list(column) for column in zip(*good, strict=True)]
            good = []
        if isinstance(record, BadRow):
            yield record
            clean_since = records.offset
        elif record is None:
            return _At(records.offset, records.line) if handing_over else None


def _cells(count: int) -> str:
    return f"{count} cell{'' if count == 1 else 's'}"


class CappedFile(io.RawIOBase):
    """An open descriptor read as a file of its first ``end`` bytes (the size it had when it was
    checked), closed with it. Someone who can write to the file can grow it after the check,
    even by gigabytes of sparse NULs at no cost to them: what is read must be what was checked.
    Reads are ``pread``s at an offset of its own, and only this object moves it."""

    def __init__(self, fd: int, end: int) -> None:
        super().__init__()
        self._fd = fd
        self.end = end
        self._offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: Any) -> int:
        count = _pread(self._fd, buffer, self._offset, self.end)
        self._offset += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._offset, io.SEEK_END: self.end}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._offset = base + offset
        return self._offset

    def tell(self) -> int:
        return self._offset

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _pread(fd: int, buffer: Any, offset: int, end: int | None) -> int:
    """``pread`` into ``buffer`` at ``offset``, never past ``end`` (when it is known)."""
    if end is not None:
        buffer = memoryview(buffer).cast("B")[: max(0, end - offset)]
        if not len(buffer):
            return 0
    return os.preadv(fd, [buffer], offset)


def _end_of(handle: IO[bytes]) -> int | None:
    """Where reads of ``handle``'s descriptor must stop: a ``CappedFile``'s end (buffered or
    not), else the file's own."""
    raw = getattr(handle, "raw", handle)
    return raw.end if isinstance(raw, CappedFile) else None


class _Reads(io.RawIOBase):
    """The file as pyarrow reads it: at an offset of its own (``pread``), not past ``end``, and
    cut off by ``stop``. pyarrow reads ahead on a thread of its own, and once it has failed goes
    on reading to the end of the file: that must neither move the handle the careful reader then
    reads, nor read a descriptor that its owner has closed (and the process may have reused)."""

    def __init__(self, fd: int, offset: int, end: int | None = None) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._end = end
        self._lock = threading.Lock()
        self._stopped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            if self._stopped:
                return 0  # the end of the file, as far as pyarrow is concerned
            count = _pread(self._fd, buffer, self._offset, self._end)
            self._offset += count
            return count

    def stop(self) -> None:
        """No read after this returns (one under way is waited for)."""
        with self._lock:
            self._stopped = True


class _Records:
    """CSV records read one at a time, each from at most ``MAX_ROW_BYTES``, with the offset
    and line number after the last one read."""

    def __init__(self, handle: IO[bytes], offset: int, line: int) -> None:
        self._handle = handle
        self.offset = offset
        self.line = line

    def next(self, width: int) -> list[str] | BadRow | None:
        """The next row's cells, or a ``BadRow``, or ``None`` at the end; blank lines, which
        are no rows (as for pyarrow), are passed over."""
        while True:
            first = self.line
            size = 0
            problem: str | None = None

            def lines() -> Iterator[str]:
                nonlocal size, problem
                while raw := self._handle.readline(MAX_ROW_BYTES + 1 - size):
                    size += len(raw)
                    self.offset += len(raw)
                    ended = raw.endswith(b"\n")
                    if size > MAX_ROW_BYTES:
                        problem = too_long()
                        if not ended:
                            self.offset = self._skip_line()
                        self.line += 1
                        return
                    self.line += ended
                    try:
                        yield raw.decode()
                    except UnicodeDecodeError as exc:
                        problem = problem or f"is not UTF-8 (byte {raw[exc.start]:#04x})"
                        yield raw.decode(errors="surrogateescape")

            try:
                cells = next(csv.reader(lines()), None)
            except csv.Error as exc:
                problem = problem or f"cannot be read as CSV: {exc}"
                cells = []
            if problem is not None:
                return BadRow(problem, first)
            if cells is None:
                return None
            if not cells:
                continue
            if len(cells) != width:
                return BadRow(f"has {_cells(len(cells))} where the header has {_cells(width)}", first)
            return cells

    def _skip_line(self) -> int:
        _skip_line(self._handle)
        return self._handle.tell()
