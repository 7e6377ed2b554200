"""The ``file`` monitoring sink (``monitor.files.FileSink``) on real files: parts hidden until
rotated (by size, by age, at close), whole lines only, a failed write cut back, the parts a dead
server left published by the next, and its settings' errors."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.events import EventShaper, Masking
from scorer_core.monitor.files import FileSink
from scorer_core.monitor.sinks import Event, SinkError, event_bytes
from tests.conftest import wait_for
from tests.monitor_records import scored

SHAPER = EventShaper(Masking())


def events(count: int, prefix: str = "e", rows: int = 1) -> list[Event]:
    """``count`` events of ``rows`` rows each, ids ``<prefix>0``, ``<prefix>1``..."""
    return SHAPER.shape([scored(f"{prefix}{i}", rows) for i in range(count)])


def hidden(directory: Path) -> list[Path]:
    return sorted(directory.glob(".events-*.jsonl.open"))


def published(directory: Path) -> list[Path]:
    return sorted(directory.glob("events-*.jsonl"))


def lines_of(part: Path) -> list[Any]:
    """A part's events; it must hold whole lines only, each one JSON."""
    data = part.read_bytes()
    assert data.endswith(b"\n"), f"{part.name} ends in a half line"
    return [json.loads(line) for line in data.splitlines()]


def ids_published(directory: Path) -> list[str]:
    return [event["id"] for part in published(directory) for event in lines_of(part)]


@pytest.fixture
def sinks() -> Iterator[list[FileSink]]:
    """Sinks to close at the end of a test, whatever happened."""
    made: list[FileSink] = []
    yield made
    for sink in made:
        sink.close(1.0)


def test_a_part_is_hidden_until_it_is_rotated_at_its_size(tmp_path, sinks):
    sink = FileSink(tmp_path, max_bytes=3000, max_seconds=300)
    sinks.append(sink)
    batch = events(2)
    size = len(b"".join(event_bytes(event) + b"\n" for event in batch))

    sink.send(batch, 1.0)
    assert published(tmp_path) == []
    [part] = hidden(tmp_path)
    assert [event["id"] for event in lines_of(part)] == ["e0", "e1"]

    for number in range(1, 12):
        sink.send(events(2, f"b{number}-"), 1.0)
        assert len(hidden(tmp_path)) <= 1
    sink.close(1.0)

    parts = published(tmp_path)
    assert len(parts) >= 3 and hidden(tmp_path) == []
    # Each part but the last reached the size; none overran it by more than one send.
    for part in parts[:-1]:
        assert 3000 <= part.stat().st_size < 3000 + size + 100
    expected = ["e0", "e1"] + [f"b{n}-{i}" for n in range(1, 12) for i in range(2)]
    assert ids_published(tmp_path) == expected


def test_an_idle_sink_publishes_a_part_past_its_age(tmp_path, sinks):
    sink = FileSink(tmp_path, max_bytes=10**6, max_seconds=0.2)
    sinks.append(sink)
    sink.send(events(1), 1.0)
    written = time.monotonic()
    sink.idle()
    assert published(tmp_path) == [] or time.monotonic() - written >= 0.2

    def idle_published() -> list[Path]:
        sink.idle()
        return published(tmp_path)

    wait_for(idle_published, 10, "the part published by age")
    assert time.monotonic() - written >= 0.2
    assert hidden(tmp_path) == [] and ids_published(tmp_path) == ["e0"]
    sink.idle()  # nothing open: nothing to publish
    assert len(published(tmp_path)) == 1


def test_a_busy_sink_publishes_a_part_past_its_age_without_idling(tmp_path, sinks):
    # The outbox tells a sink it is idle only after a second with nothing to send: a server
    # exporting an event every half second never idles, and its part must not stay hidden
    # until it reaches SCORER_MONITOR_FILE_MAX_BYTES (64 MiB: hours, or days).
    sink = FileSink(tmp_path, max_bytes=10**6, max_seconds=0.2)
    sinks.append(sink)
    sink.send(events(1, "a"), 1.0)
    time.sleep(0.25)  # past the part's age (a lower bound: a loaded machine only sleeps longer)
    sink.send(events(1, "b"), 1.0)
    assert hidden(tmp_path) == []
    assert ids_published(tmp_path) == ["a0", "b0"]


def test_close_publishes_the_open_part_and_leaves_nothing_hidden(tmp_path):
    sink = FileSink(tmp_path, max_bytes=10**6, max_seconds=300)
    sink.close(1.0)  # nothing written: nothing published
    assert list(tmp_path.iterdir()) == []

    sink = FileSink(tmp_path, max_bytes=10**6, max_seconds=300)
    sink.send(events(3, rows=2500), 1.0)
    assert published(tmp_path) == []
    sink.close(1.0)
    assert hidden(tmp_path) == []
    [part] = published(tmp_path)
    assert [(event["id"], event["part"]) for event in lines_of(part)] == [
        (f"e{i}", n) for i in range(3) for n in (1, 2, 3)
    ]
    assert part.name.startswith("events-") and f"-{os.getpid()}-" in part.name


def test_a_failed_write_is_cut_back_to_its_last_whole_line(tmp_path, sinks):
    sink = FileSink(tmp_path, max_bytes=10**6, max_seconds=300)
    sinks.append(sink)
    sink.send(events(1, "before"), 1.0)
    [part] = hidden(tmp_path)
    whole = part.read_bytes()
    large = events(1, "large", rows=200)
    assert len(event_bytes(large[0])) > 4096

    # The file size limit lets a write through up to it, then fails the next one (EFBIG, with
    # SIGXFSZ ignored): the payload is written in part, as on a full disk.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(whole) + 1000, hard))
        with pytest.raises(SinkError, match=str(tmp_path)):
            sink.send(large, 1.0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)

    assert part.read_bytes() == whole
    sink.send(events(1, "after"), 1.0)  # the retry, or the next batch, goes on from a whole line
    sink.close(1.0)
    assert ids_published(tmp_path) == ["before0", "after0"]


def test_a_directory_gone_is_a_sink_error_until_it_is_back(tmp_path, sinks):
    directory = tmp_path / "events"
    directory.mkdir()
    sink = FileSink(directory, max_bytes=10**6, max_seconds=300)
    sinks.append(sink)
    directory.rmdir()
    with pytest.raises(SinkError, match="cannot write to"):
        sink.send(events(1), 1.0)
    directory.mkdir()
    sink.send(events(1, "back"), 1.0)
    sink.close(1.0)
    assert ids_published(directory) == ["back0"]


def exited_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return int(done.stdout)


@pytest.fixture
def part_name(tmp_path) -> Callable[..., str]:
    """Hidden part names as the sink makes them, ``.events-<host>-<pid>-<stamp>-<serial>.jsonl.open``,
    learnt from a part it writes (in a directory of its own), for another pid, serial or host."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    probe = FileSink(probe_dir, max_bytes=10**6, max_seconds=300)
    probe.send(events(1), 1.0)
    [own] = hidden(probe_dir)
    probe.close(1.0)
    pieces = own.name.split("-")

    def name(pid: int, serial: int, host: str | None = None, stamp: str | None = None) -> str:
        head = "-".join(pieces[:-3]) if host is None else f".events-{host}"
        return "-".join([head, str(pid), stamp or pieces[-2], f"{serial:06d}.jsonl.open"])

    return name


def test_the_parts_a_dead_server_left_are_published_and_a_live_ones_left_alone(tmp_path, part_name):
    directory = tmp_path / "events"
    directory.mkdir()
    line = event_bytes(events(1, "left")[0]) + b"\n"
    dead, empty_dead = exited_pid(), exited_pid()
    living = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (directory / part_name(dead, 1)).write_bytes(line + line + b'{"id": "half')
        (directory / part_name(empty_dead, 2)).write_bytes(b'{"id": "half')
        (directory / part_name(living.pid, 3)).write_bytes(line + b"{")
        (directory / part_name(dead, 5, host="another-host")).write_bytes(line + b"{")

        sink = FileSink(directory, max_bytes=10**6, max_seconds=300)

        [recovered] = published(directory)
        assert recovered.name == part_name(dead, 1)[1 : -len(".open")]
        assert recovered.read_bytes() == line + line
        left = {path.name for path in hidden(directory)}
        assert left == {part_name(living.pid, 3), part_name(dead, 5, host="another-host")}
        assert (directory / part_name(living.pid, 3)).read_bytes() == line + b"{"
        sink.close(1.0)
    finally:
        living.kill()
        living.wait()


def test_a_part_an_earlier_process_left_under_this_pid_is_published(tmp_path, part_name, sinks):
    # A container's server often has the same pid after a restart (1, or its init's child) and
    # the same host name: the part its crashed predecessor left is not this process's own.
    directory = tmp_path / "events"
    directory.mkdir()
    running = FileSink(directory, max_bytes=10**6, max_seconds=300)
    sinks.append(running)
    running.send(events(1, "open"), 1.0)
    [open_part] = hidden(directory)
    earlier = part_name(os.getpid(), 1, stamp="20200101T000000")
    line = event_bytes(events(1, "left")[0]) + b"\n"
    (directory / earlier).write_bytes(line + b'{"id": "half')

    sinks.append(FileSink(directory, max_bytes=10**6, max_seconds=300))

    [recovered] = published(directory)
    assert recovered.name == earlier[1 : -len(".open")] and recovered.read_bytes() == line
    assert hidden(directory) == [open_part]  # this process's own part, still being written


@pytest.fixture
def file_settings(monkeypatch) -> Iterator[Any]:
    def load(**variables: str) -> Any:
        monkeypatch.setenv("SCORER_MONITOR", "file")
        for name, value in variables.items():
            monkeypatch.setenv(f"SCORER_MONITOR_{name}", value)
        return load_settings()

    yield load


def test_the_file_sink_needs_scorer_monitor_dir(file_settings):
    with pytest.raises(ConfigurationError, match="SCORER_MONITOR=file needs SCORER_MONITOR_DIR"):
        FileSink.from_settings(file_settings())


def test_a_dir_that_cannot_be_made_is_named(file_settings, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match=r"SCORER_MONITOR_DIR '.*/file/events' cannot be created"):
        FileSink.from_settings(file_settings(DIR=str(tmp_path / "file" / "events")))


def test_the_settings_make_the_dir_and_rotate_at_their_size(file_settings, tmp_path):
    directory = tmp_path / "a" / "b"
    sink = FileSink.from_settings(file_settings(DIR=str(directory), FILE_MAX_BYTES="1024"))
    assert sink.directory == directory and directory.is_dir()
    sink.send(events(4), 1.0)  # over 1 KiB
    assert hidden(directory) == [] and len(ids_published(directory)) == 4
    sink.close(1.0)
