"""GET /model/score?file= against a client who can write in SCORER_FILE_SCORING_DIR: paths
swapped while the server works on them, and files that are small on disk but huge once decoded.
Real servers, real sockets on 127.0.0.1, real renames; every loop bounded in count and time."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# serial: peak-memory bounds, which other processes on the machine must not disturb.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}
MARKER = "OUTSIDE-7f3a"  # the outside file's content: no answer may ever show it
AT_FDCWD = -100
RENAME_EXCHANGE = 2


def _exchanger() -> Callable[[Path, Path], None]:
    """``exchange(a, b)``: the two paths swapped in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), or by three renames where the C library lacks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:

        def by_renames(a: Path, b: Path) -> None:
            spare = a.with_name(a.name + ".spare")
            os.rename(a, spare)
            os.rename(b, a)
            os.rename(spare, b)

        return by_renames
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]

    def exchange(a: Path, b: Path) -> None:
        if renameat2(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return exchange


@contextmanager
def swapping(a: Path, b: Path, *, most: int = 200_000, seconds: float = 60) -> Iterator[None]:
    """A thread swaps ``a`` and ``b`` over and over while the block runs (at most ``most`` times
    and ``seconds``), and leaves them as they were."""
    exchange = _exchanger()
    stop = threading.Event()
    swaps = [0]

    def run() -> None:
        end = time.monotonic() + seconds
        while not stop.is_set() and swaps[0] < most and time.monotonic() < end:
            exchange(a, b)
            swaps[0] += 1
            time.sleep(0.0002)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        if swaps[0] % 2:
            exchange(a, b)
    assert swaps[0] > 10, "the paths were hardly swapped: the race did not run"


def gets(target, path: str, *, most: int = 300, seconds: float = 20) -> list[tuple[int, str, float]]:
    """(status, body, seconds taken) of up to ``most`` GETs sent one after another for ``seconds``."""
    replies = []
    end = time.monotonic() + seconds
    for _ in range(most):
        if time.monotonic() > end:
            break
        started = time.monotonic()
        reply = target.get(path, timeout=30)
        replies.append((reply.status, reply.text, time.monotonic() - started))
    return replies


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parquet_of(path: Path, rows: int, value: str) -> None:
    """``rows`` rows whose cell ``x`` is ``value``, dictionary-encoded: a few KiB on disk."""
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value]))
    pq.write_table(pa.table({"x": column}), path, compression="zstd")


@pytest.fixture
def scoring_dir(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    (root / "rows.csv").write_text("x\n1.5\n-2\n")
    return root


def test_a_directory_swapped_for_a_link_out_never_shows_the_outside_file(probe_server, scoring_dir, tmp_path):
    (scoring_dir / "swap").mkdir()
    (scoring_dir / "swap" / "x.csv").write_text("x\n1\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.csv").write_text(f"x\n{MARKER}\n")
    (scoring_dir / "other").symlink_to("../outside")
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir)}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        with swapping(scoring_dir / "swap", scoring_dir / "other"):
            replies = gets(target, "/model/score?file=swap/x.csv")
        assert target.get("/model/score?file=swap/x.csv").status == 200
    leaked = [text for _, text, _ in replies if MARKER in text]
    assert not leaked, f"{len(leaked)} of {len(replies)} answers showed the outside file: {leaked[0][:300]}"
    statuses = {status for status, _, _ in replies}
    assert statuses <= {200, 400}, statuses
    refusals = [text for status, text, _ in replies if status == 400]
    assert all("outside SCORER_FILE_SCORING_DIR" in t or "does not exist" in t for t in refusals), refusals[
        :3
    ]
    # Both sides of the race were met: the directory read, the link refused.
    assert 200 in statuses and any("outside" in t for t in refusals), statuses


def test_a_fifo_swapped_for_the_file_is_refused_at_once_and_the_server_keeps_serving(
    probe_server, scoring_dir
):
    (scoring_dir / "data.csv").write_text("x\n1\n")
    os.mkfifo(scoring_dir / "pipe")
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir), "SCORER_REQUEST_TIMEOUT": "5"}
    large = orjson.dumps({"fields": ["x"], "rows": [["1.5"]] * 40_000})  # parsed off the event loop
    assert len(large) >= 256 * 1024
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        with swapping(scoring_dir / "data.csv", scoring_dir / "pipe"):
            replies = gets(target, "/model/score?file=data.csv")
        assert target.get("/model/score?file=data.csv").status == 200
        posted = target.post("/model/score", raw=large, timeout=60)
        assert posted.status == 200, posted
    statuses = {status for status, _, _ in replies}
    assert statuses <= {200, 400}, f"{statuses}: a FIFO held a thread until the deadline"
    refusals = [text for status, text, _ in replies if status == 400]
    assert all("not a regular file" in t or "does not exist" in t for t in refusals), refusals[:3]
    assert any("not a regular file" in t for t in refusals), "the FIFO was never met: the race did not run"
    assert max(took for _, _, took in replies) < 5, "every answer came at once, none at the deadline"


def test_a_small_parquet_file_of_millions_of_rows_gets_413_and_costs_no_memory(probe_server, scoring_dir):
    parquet_of(scoring_dir / "bomb.parquet", 2_000_000, "1.5")
    assert (scoring_dir / "bomb.parquet").stat().st_size < 20_000
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir)}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        pid = target.process.pid
        before = status_kib(pid, "VmHWM")
        reply = target.get("/model/score?file=bomb.parquet", timeout=120)
        grown = status_kib(pid, "VmHWM") - before
        assert target.get("/model/score?file=rows.csv").status == 200
    assert reply.status == 413, reply
    assert "SCORER_FILE_MAX_ROWS" in reply.json()["detail"] and "'bomb.parquet'" in reply.json()["detail"]
    assert grown < 100 * 1024, f"the peak memory grew by {grown // 1024} MiB"


def test_decoded_size_and_rows_are_bounded_by_their_settings(probe_server, scoring_dir):
    # One 100 kB value, dictionary-encoded, 2,000 times: 200 MB once decoded.
    long = pa.DictionaryArray.from_arrays(pa.array([0] * 2000, pa.int32()), pa.array(["a" * 100_000]))
    pq.write_table(pa.table({"x": pa.array(["1"] * 2000), "note": long}), scoring_dir / "long.parquet")
    (scoring_dir / "many.csv").write_text("x\n" + "1\n" * 3000)
    (scoring_dir / "wide.csv").write_text(
        ",".join(["x", *"abcdefghijklmnopqrstuvwxyz"]) + "\n" + ("1" + "," * 26 + "\n") * 900
    )
    env = {
        "SCORER_FILE_SCORING_DIR": str(scoring_dir),
        "SCORER_FILE_MAX_ROWS": "2500",
        "SCORER_FILE_MAX_DECODED_BYTES": "65536",
    }
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        pid = target.process.pid
        before = status_kib(pid, "VmHWM")
        answers = {
            name: target.get(f"/model/score?file={name}") for name in ("long.parquet", "many.csv", "wide.csv")
        }
        grown = status_kib(pid, "VmHWM") - before
        assert target.get("/model/score?file=rows.csv").status == 200
    for name, setting in [
        ("long.parquet", "SCORER_FILE_MAX_DECODED_BYTES"),
        ("many.csv", "SCORER_FILE_MAX_ROWS"),
        ("wide.csv", "SCORER_FILE_MAX_DECODED_BYTES"),  # 900 rows of 27 empty-ish cells: 76,500 bytes
    ]:
        assert answers[name].status == 413, (name, answers[name])
        detail = answers[name].json()["detail"]
        assert setting in detail and f"'{name}'" in detail and str(scoring_dir) not in detail
    assert grown < 100 * 1024, f"the peak memory grew by {grown // 1024} MiB"


def test_a_file_read_past_its_deadline_stops_being_read(probe_server, scoring_dir):
    # Allowed, but far from readable whole within the deadline even on a fast machine: read
    # whole, its rows take about 2 GiB as Python strings; 4,000,000 rows were read whole within
    # 1 s here (403 MiB), which is no test of the deadline.
    parquet_of(scoring_dir / "slow.parquet", 20_000_000, "1.5")
    env = {
        "SCORER_FILE_SCORING_DIR": str(scoring_dir),
        "SCORER_FILE_MAX_ROWS": "25000000",
        "SCORER_FILE_MAX_DECODED_BYTES": "1000000000",
        "SCORER_REQUEST_TIMEOUT": "0.3",
    }
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        pid = target.process.pid
        before = status_kib(pid, "VmHWM")
        reply = target.get("/model/score?file=slow.parquet", timeout=60)
        time.sleep(3)  # the thread stops at its next batch; give a loaded machine time for it
        busy = cpu_seconds(pid)
        time.sleep(2)
        busy = cpu_seconds(pid) - busy
        grown = status_kib(pid, "VmHWM") - before
        assert target.get("/model/score?file=rows.csv").status == 200
    assert reply.status == 504 and "SCORER_REQUEST_TIMEOUT" in reply.json()["detail"], reply
    assert busy < 0.5, f"the server still worked {busy:.1f} s of CPU in 2 s after answering 504"
    assert grown < 800 * 1024, f"the peak memory grew by {grown // 1024} MiB"
