"""The ``file`` sink: events as JSON Lines parts in a directory, for Fluent Bit, Spark or a shell.

A part is written under a hidden name (``.events-....jsonl.open``: Spark, Hive and most
collectors skip names starting with a dot) and renamed to its final ``events-....jsonl`` only
after an fsync, when it is rotated (by size, by age, or at stop). So a reader of final names
never sees a half-written part, and a part under its final name is on disk. A failed write is cut
back to the part's last whole line before the outbox retries it: a line is written whole or not
at all. A server that died with a part open leaves it under its hidden name; the next server on
the same host with the same directory cuts it to its last whole line and publishes it. Events
are delivered at least once: a crash between a write and the outbox's count repeats nothing, a
retry after a failed fsync may repeat a line.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.monitor.sinks import Event, SinkError, event_bytes

__all__ = ["FileSink"]

log = logging.getLogger(__name__)

_OPEN_SUFFIX = ".open"
#: The parts this process opened. A hidden part under this process's pid that is not among them
#: was left by an earlier process with the same pid: a container's server often is pid 1 (or its
#: init's first child) after every restart, under the same host name.
_OPENED: set[str] = set()


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:64] or "host"


class FileSink:
    """JSON Lines parts under ``directory``, rotated at ``max_bytes`` or ``max_seconds``."""

    name: ClassVar[str] = "file"

    def __init__(self, directory: Path, max_bytes: int, max_seconds: float) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_seconds = max_seconds
        self._host = _host()
        self._serial = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self.recover()

    @classmethod
    def from_settings(cls, settings: Settings) -> FileSink:
        directory = settings.monitor_dir
        if directory is None:
            raise ConfigurationError(
                "SCORER_MONITOR=file needs SCORER_MONITOR_DIR: where to write the events"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"SCORER_MONITOR_DIR {str(directory)!r} cannot be created: {exc.strerror}"
            ) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigurationError(f"SCORER_MONITOR_DIR {str(directory)!r} is not writable")
        return cls(directory, settings.monitor_file_max_bytes, settings.monitor_file_max_seconds)

    def send(self, events: Sequence[Event], timeout: float) -> None:
        payload = b"".join(event_bytes(event) + b"\n" for event in events)
        try:
            fd = self._fd if self._fd is not None else self._open()
            _write_whole(fd, payload, self._size)
        except OSError as exc:
            raise SinkError(f"cannot write to {self.directory}: {exc.strerror or exc}") from None
        self._size += len(payload)
        if self._size >= self._max_bytes or self._aged():
            self._rotate()

    def idle(self) -> None:
        """Called while no event waits: publish a part past its age, so a quiet server's
        events still reach readers."""
        if self._aged():
            self._rotate()

    def _aged(self) -> bool:
        """Whether the open part is past its age. ``send`` asks too: the outbox calls ``idle``
        only after a second with nothing to send, which a server exporting an event every half
        second never has, and its part would stay hidden until it reached its size."""
        return self._fd is not None and time.monotonic() - self._opened >= self._max_seconds

    def close(self, timeout: float) -> None:
        self._rotate()

    def recover(self) -> None:
        """Publish the parts that servers on this host left open when they died (cut to their
        last whole line); a live process's parts are left alone."""
        for path in sorted(self.directory.glob(f".events-{self._host}-*.jsonl{_OPEN_SUFFIX}")):
            pid = _pid_of(path.name)
            if pid is None or path.name in _OPENED or (pid != os.getpid() and _alive(pid)):
                continue
            try:
                _publish_whole_lines(path)
                log.warning("Monitoring file sink: published %s, left open by process %d", path.name, pid)
            except OSError as exc:
                log.error("Monitoring file sink: cannot recover %s: %s", path, exc)

    def _open(self) -> int:
        self._serial += 1
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f".events-{self._host}-{os.getpid()}-{stamp}-{self._serial:06d}.jsonl{_OPEN_SUFFIX}"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o640)
        _OPENED.add(name)
        self._fd, self._path, self._size, self._opened = fd, path, 0, time.monotonic()
        return fd

    def _rotate(self) -> None:
        """fsync the open part, give it its final name, and fsync the directory."""
        fd, path = self._fd, self._path
        if fd is None or path is None:
            return
        self._fd = self._path = None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, path.with_name(path.name[1 : -len(_OPEN_SUFFIX)]))
        _fsync_directory(self.directory)


def _write_whole(fd: int, payload: bytes, size: int) -> None:
    """Write all of ``payload``, or nothing: a short write is cut back to ``size``."""
    view = memoryview(payload)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        os.ftruncate(fd, size)
        raise


def _publish_whole_lines(path: Path) -> None:
    with open(path, "r+b") as part:
        data = part.read()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            part.truncate(whole)
        part.flush()
        os.fsync(part.fileno())
    if whole == 0:
        path.unlink()
        return
    os.rename(path, path.with_name(path.name[1 : -len(_OPEN_SUFFIX)]))
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_of(name: str) -> int | None:
    """The pid in ``.events-<host>-<pid>-<stamp>-<serial>.jsonl.open`` (the host may hold dashes)."""
    parts = name.split("-")
    try:
        return int(parts[-3])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
