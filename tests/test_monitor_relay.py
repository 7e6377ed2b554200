"""The export process behind a ``Relay``: the sinks run there, not in the server. Real
processes, a real file sink: a process that dies is started again and what it held is sent
again; a process that stops answering never blocks an offer, which drops and counts instead."""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.monitor.monitor import Monitor
from scorer_core.monitor.relay import Relay
from tests.conftest import wait_for
from tests.monitor_records import scored

pytestmark = pytest.mark.slow


@pytest.fixture
def relay(monkeypatch, tmp_path):
    def build(**variables: str) -> tuple[Relay, Monitor]:
        monkeypatch.setenv("SCORER_MONITOR", "file")
        monkeypatch.setenv("SCORER_MONITOR_DIR", str(tmp_path / "events"))
        for name, value in variables.items():
            monkeypatch.setenv(f"SCORER_MONITOR_{name}", value)
        monitor = Monitor.from_settings(load_settings())
        assert monitor is not None
        [channel] = monitor.channels
        assert isinstance(channel, Relay)
        built.append(monitor)
        return channel, monitor

    built: list[Monitor] = []
    yield build
    for monitor in built:
        monitor.close(5)


def exported_ids(directory) -> list[str]:
    return [
        orjson.loads(line)["id"]
        for part in sorted(directory.glob("events-*.jsonl"))
        for line in part.read_bytes().splitlines()
    ]


def sent(relay: Relay) -> int:
    return relay.snapshots()["file"].sent


def test_a_dead_export_process_is_started_again_and_nothing_after_it_is_lost(relay, tmp_path):
    channel, monitor = relay()
    monitor.start()
    for i in range(10):
        monitor.offer(scored(f"a{i}"))
    wait_for(lambda: sent(channel) == 10, 30, "the first ten sent")
    first = channel._process
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    for i in range(10):
        monitor.offer(scored(f"b{i}"))
    wait_for(lambda: channel._process is not None and channel._process.pid != first.pid, 30, "a new process")
    monitor.close(10)
    ids = exported_ids(tmp_path / "events")
    assert [i for i in ids if i.startswith("b")] == [f"b{i}" for i in range(10)]
    assert [i for i in ids if i.startswith("a")] == [f"a{i}" for i in range(10)]
    # The dead process's counts are kept: a counter never goes back.
    assert channel.snapshots()["file"].sent == 20


def test_a_stalled_export_process_never_blocks_an_offer(relay, tmp_path):
    channel, monitor = relay(QUEUE_SIZE="200")
    monitor.start()
    monitor.offer(scored("warm-up"))
    wait_for(lambda: sent(channel) == 1, 30, "the export process running")
    process = channel._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        for i in range(20_000):  # far more than the socket's buffers and the queue hold
            monitor.offer(scored(f"s{i}", rows=50))
        offering = time.monotonic() - started
        assert offering < 10, f"20,000 offers took {offering:.1f} s: an offer waited"
        dropped = channel.snapshots()["file"].dropped
        assert dropped >= 20_000 - 200 - 5_000  # at most the queue and what the socket took
    finally:
        os.kill(process.pid, signal.SIGCONT)
    wait_for(lambda: channel.snapshots()["file"].depth == 0, 60, "the queue emptied")
    monitor.close(30)
    snapshot = channel.snapshots()["file"]
    assert snapshot.sent + snapshot.dropped == 20_001 and snapshot.failed == 0
    assert len(exported_ids(tmp_path / "events")) == snapshot.sent


def test_a_dead_export_process_counts_what_it_held_as_dropped(monkeypatch):
    """A sink that never answers: the export process holds every event, then is killed. Its
    queue and the batch it was sending are counted dropped, nothing is lost uncounted, and the
    counters never go back."""
    import socket

    hole = socket.socket()  # takes connections into its backlog, never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    monkeypatch.setenv("SCORER_MONITOR", "cloudevents")
    monkeypatch.setenv("SCORER_MONITOR_URL", f"http://127.0.0.1:{hole.getsockname()[1]}/")
    monitor = Monitor.from_settings(load_settings())
    assert monitor is not None
    [channel] = monitor.channels
    assert isinstance(channel, Relay)
    try:
        monitor.start()
        for i in range(50):
            monitor.offer(scored(f"h{i}"))

        def held() -> int:  # by the export process, as it last reported
            reported = channel._reported["cloudevents"]
            return reported.depth + reported.in_flight

        wait_for(lambda: held() == 50, 30, "the export process holding all 50")
        process = channel._process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        monitor.offer(scored("after"))  # found dead when this one is handed over: replaced
        wait_for(
            lambda: channel._process is not None and channel._process.pid != process.pid, 30, "a new one"
        )
        snapshot = channel.snapshots()["cloudevents"]
        assert snapshot.dropped == 50 and snapshot.sent == 0  # what the dead one held

        def accounted() -> int:  # the new one reports "after" within half a second
            s = channel.snapshots()["cloudevents"]
            return s.sent + s.dropped + s.failed + s.depth + s.in_flight

        wait_for(lambda: accounted() == 51, 10, "all 51 accounted for")
    finally:
        monitor.close(2)
        hole.close()


def test_a_large_request_is_handed_over_in_slices_and_exported_whole(relay, tmp_path):
    """25,000 rows go to the export process in slices of 10,000 (the GIL let go between them),
    and come out as 25 events of 1,000 rows, in order, each row with its own answer."""
    channel, monitor = relay()
    monitor.start()
    monitor.offer(scored("large", rows=25_000))
    monitor.offer(scored("small"))
    monitor.close(30)
    events = [
        orjson.loads(line)
        for part in sorted((tmp_path / "events").glob("events-*.jsonl"))
        for line in part.read_bytes().splitlines()
    ]
    large = sorted((e for e in events if e["id"] == "large"), key=lambda e: e["part"])
    assert [e["part"] for e in large] == list(range(1, 26)) and all(e["parts"] == 25 for e in large)
    rows = [row for e in large for row in e["request"]["rows"]]
    assert rows == [[float(i), f"n{i}"] for i in range(25_000)]
    assert [row[0] for e in large for row in e["response"]["rows"]] == [2.0 * i for i in range(25_000)]
    assert [e["id"] for e in events if e["id"] == "small"] == ["small"]
    assert channel.snapshots()["file"].sent == 26
