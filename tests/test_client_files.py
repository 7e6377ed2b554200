"""server/files.py and tables/files.read_table on a real file system: a client-named file opened
once, beneath the scoring directory, and read within limits and the request's deadline."""

from __future__ import annotations

import errno
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorer_core.errors import InvalidRequest, ScorerError
from scorer_core.server.files import ClientFile, _refusal, open_client_file
from scorer_core.tables.files import FileTooLarge, ReadLimits, read_table
from scorer_core.wire.deadline import DeadlinePassed, working_until


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "files"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "rows.csv").write_text("x\n1\n2\n")
    (root / "sub" / "deeper" / "more.csv").write_text("x\n3\n")
    (tmp_path / "secret.csv").write_text("x\nSECRET\n")
    (root / "inside.csv").symlink_to("sub/deeper/more.csv")  # a relative link that stays inside
    (root / "linked-dir").symlink_to("sub")
    (root / "up.csv").symlink_to("../secret.csv")
    (root / "sub" / "up-twice.csv").symlink_to("../../secret.csv")
    (root / "absolute.csv").symlink_to(tmp_path / "secret.csv")
    (root / "loop.csv").symlink_to("loop.csv")
    (root / "to-parquet.csv").symlink_to("data.parquet")  # the format is the target's
    pq.write_table(pa.table({"x": ["5"]}), root / "data.parquet")
    os.mkfifo(root / "pipe.csv")
    return root


def read(opened: ClientFile, limits: ReadLimits | None = None) -> tuple[list[str], list[list[str]]]:
    with opened, opened.reading() as handle:
        return read_table(handle, opened.kind, opened.name, limits)


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("rows.csv", [["1"], ["2"]]),
        ("./sub/../rows.csv", [["1"], ["2"]]),
        ("sub//deeper/more.csv", [["3"]]),
        ("inside.csv", [["3"]]),
        ("linked-dir/deeper/more.csv", [["3"]]),
        ("to-parquet.csv", [["5"]]),
    ],
)
def test_names_that_stay_inside_are_read(root, name, rows):
    assert read(open_client_file(root, name, 1 << 20)) == (["x"], rows)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../secret.csv", "outside SCORER_FILE_SCORING_DIR"),
        ("sub/../../secret.csv", "outside SCORER_FILE_SCORING_DIR"),
        ("up.csv", "outside SCORER_FILE_SCORING_DIR"),
        ("sub/up-twice.csv", "outside SCORER_FILE_SCORING_DIR"),
        ("absolute.csv", "outside SCORER_FILE_SCORING_DIR (an absolute symbolic link)"),
        ("loop.csv", "too many levels of symbolic links"),
        ("pipe.csv", "not a regular file"),
        ("sub", "not a regular file"),
        ("rows.csv/x.csv", "does not exist"),
        ("gone/rows.csv", "does not exist"),
        ("a.csv\0x", "NUL byte"),
        ("A" * 300 + ".csv", "file name is too long"),
        ("A/" * 2100 + "a.csv", "file name is too long"),
    ],
)
def test_names_that_leave_or_name_no_regular_file_are_refused(root, name, message):
    started = time.monotonic()
    with pytest.raises(InvalidRequest) as refused:
        open_client_file(root, name, 1 << 20)
    assert refused.value.status_code == 400
    assert message in refused.value.message
    assert str(root) not in refused.value.message and "SECRET" not in refused.value.message
    assert time.monotonic() - started < 5, "a FIFO is refused at once, never waited on"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.ENXIO, "is not a regular file"),  # a Unix socket (over HTTP: test_file_scoring_http)
        (errno.ENODEV, "is not a regular file"),  # a device node without its driver
        (errno.EISDIR, "is not a regular file"),
        (errno.ELOOP, "changed while it was being opened"),  # a link at open(), gone at readlink()
        (errno.EWOULDBLOCK, "it is in use"),  # a lease held by someone writing in the directory
    ],
)
def test_an_open_that_fails_for_what_lies_in_the_directory_is_the_clients_400(code, message):
    """The errors open() gives for what someone put in the directory, which answered 500. Each
    is a race or a device that a file system test cannot make at will, so the mapping is checked."""
    refused = _refusal(OSError(code, os.strerror(code), "/srv/private/x.csv"), "x.csv")
    assert isinstance(refused, InvalidRequest) and refused.status_code == 400
    assert message in refused.message and "private" not in refused.message


def test_a_missing_directory_is_the_servers_fault_and_its_path_stays_unsaid(tmp_path):
    with pytest.raises(ScorerError) as failed:
        open_client_file(tmp_path / "gone", "rows.csv", 1 << 20)
    assert failed.value.status_code == 500 and str(tmp_path) not in failed.value.message


def test_the_size_on_disk_is_checked_on_the_opened_file(root):
    with pytest.raises(FileTooLarge, match="larger than SCORER_MAX_REQUEST_BYTES"):
        open_client_file(root, "rows.csv", 4)


def test_a_file_answered_before_its_thread_started_is_closed_once_and_never_read(root):
    opened = open_client_file(root, "rows.csv", 1 << 20)
    fd = opened._fd
    opened.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(DeadlinePassed), opened.reading():
        pass


def test_a_file_being_read_is_closed_by_its_reader_not_under_it(root):
    opened = open_client_file(root, "rows.csv", 1 << 20)
    with opened.reading() as handle:
        opened.close()  # the request answered (a 504) while the thread reads
        assert handle.read() == b"x\n1\n2\n"
    assert handle.closed


def parquet_of(path, rows: int, value: str, **write) -> None:
    column = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([value]))
    pq.write_table(pa.table({"x": column}), path, **write)


def test_a_parquet_file_of_more_rows_than_allowed_is_refused_by_its_footer(root):
    parquet_of(root / "many.parquet", 300_000, "1.5")
    assert (root / "many.parquet").stat().st_size < 10_000
    with pytest.raises(FileTooLarge, match=r"300000 rows, more than 100000 \(SCORER_FILE_MAX_ROWS\)"):
        read(open_client_file(root, "many.parquet", 1 << 20), ReadLimits(100_000, 1 << 30))


def test_one_long_value_repeated_is_counted_before_it_is_copied_per_row(root):
    parquet_of(root / "long.parquet", 20_000, "7" * 100_000)  # 2 GB once decoded
    assert (root / "long.parquet").stat().st_size < 100_000
    with pytest.raises(FileTooLarge, match=r"more than 1048576 bytes \(SCORER_FILE_MAX_DECODED_BYTES\)"):
        read(open_client_file(root, "long.parquet", 1 << 20), ReadLimits(1_000_000, 1 << 20))


@pytest.mark.parametrize(
    ("name", "text", "limits", "setting"),
    [
        ("many.csv", "x\n" + "1\n" * 5000, ReadLimits(4999, 1 << 20), "SCORER_FILE_MAX_ROWS"),
        ("many.jsonl", '{"x": 1}\n' * 5000, ReadLimits(4999, 1 << 20), "SCORER_FILE_MAX_ROWS"),
        # 3 bytes a cell and 3 a row, as in a POST body: 5,000 rows of 10 empty cells are 165,000
        (
            "wide.csv",
            ",".join("abcdefghij") + "\n" + ",,,,,,,,,\n" * 5000,
            ReadLimits(10**6, 160_000),
            "DECODED",
        ),
        ("long.jsonl", '{"x": "' + "9" * 50_000 + '"}\n' * 1, ReadLimits(10**6, 40_000), "DECODED"),
    ],
)
def test_text_files_are_counted_as_they_are_read(root, name, text, limits, setting):
    (root / name).write_text(text)
    with pytest.raises(FileTooLarge, match=setting):
        read(open_client_file(root, name, 1 << 20), limits)
    bigger = ReadLimits(limits.rows + 1, 200_000)
    assert len(read(open_client_file(root, name, 1 << 20), bigger)[1]) == text.count("\n") - (
        name.endswith(".csv")
    )


@pytest.mark.parametrize("name", ["rows.csv", "data.parquet", "more.jsonl"])
def test_reading_stops_at_the_deadline(root, name):
    (root / "more.jsonl").write_text('{"x": 1}\n')
    with working_until(0.0), pytest.raises(DeadlinePassed):
        read(open_client_file(root, name, 1 << 20), ReadLimits(10, 1 << 20))


def test_a_json_lines_value_too_deep_to_be_a_cell_is_the_clients_400(root):
    (root / "deep.jsonl").write_text('{"x": ' + "[" * 500 + "]" * 500 + "}\n")
    with pytest.raises(InvalidRequest, match=r"file 'deep\.jsonl' cannot be read") as refused:
        read(open_client_file(root, "deep.jsonl", 1 << 20))
    assert refused.value.status_code == 400


@pytest.mark.parametrize("name", ["rows.csv", "more.jsonl", "data.parquet"])
@pytest.mark.parametrize("growth", ["rows", "sparse"])
def test_a_file_grown_after_it_was_opened_is_read_as_it_was_checked(root, name, growth):
    """The size is checked at open(); a writer in the directory then grew the open file, and
    every byte it added was read: past SCORER_MAX_REQUEST_BYTES, gigabytes of sparse NULs."""
    (root / "more.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    before = read(open_client_file(root, name, 1 << 20))
    opened = open_client_file(root, name, 1 << 20)
    with open(root / name, "ab") as grower:
        if growth == "rows":  # whole rows, each as the format writes one
            row = {"rows.csv": b"7\n", "more.jsonl": b'{"x": 7}\n', "data.parquet": b"PAR1"}[name]
            grower.write(row * 50_000)
        else:
            grower.truncate(8 << 30)  # 8 GiB more, of no disk
    started = time.monotonic()
    assert read(opened) == before
    assert time.monotonic() - started < 5, "the growth was read"
