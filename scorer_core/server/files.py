"""A client-named file under ``SCORER_FILE_SCORING_DIR``, opened once and only beneath it.

Why not check a path, then open it: anyone who can write in the directory can swap what the
path names between the two (a directory for a symlink out, a file for a FIFO), and a red-team
pass read files outside the directory that way, and blocked threads forever in ``open()`` on a
FIFO. So the path is walked one name at a time, each opened relative to the directory opened
before it, with ``O_NOFOLLOW``: nothing the walk opens is ever reached through a link it did not
look at. A link met on the way is read and walked the same way, and only while it stays inside
(a relative target whose ``..`` never climbs above the directory). The last name is opened
``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a writer) and must then be a regular
file by ``fstat`` of that descriptor, which is the only thing read afterwards.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from types import TracebackType
from typing import BinaryIO, cast

from scorer_core.errors import InvalidRequest, ScorerError
from scorer_core.tables.files import SERVED_FORMATS, FileTooLarge
from scorer_core.tables.rows import CappedFile
from scorer_core.wire.deadline import DeadlinePassed

__all__ = ["ClientFile", "open_client_file"]

SETTING = "SCORER_FILE_SCORING_DIR"
#: Linux's PATH_MAX: a longer name cannot name a file, so it is refused before any system call.
MAX_NAME_BYTES = 4096
#: Links followed in one walk, as the kernel's own limit (40), against a loop of links.
MAX_LINKS = 40

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
#: What ``open()`` says of something in the directory that is no file to read: a Unix socket
#: (ENXIO), a device without its driver (ENXIO, ENODEV), a directory (EISDIR). Whoever put it
#: there is at fault, not the server: a 400, as a FIFO gets.
_NOT_A_FILE = frozenset({errno.ENXIO, errno.ENODEV, errno.EISDIR, errno.EOPNOTSUPP})


class ClientFile:
    """An open regular file for one request, read by one thread.

    The request's answer may leave (a 504 at the deadline) while its thread still reads, and a
    descriptor closed under a reader may be reused by the next ``open`` in the process, so the
    thread would read someone else's file. So the descriptor has one owner: whoever claims it
    first, the reading thread (``reading``) or the request once it is answered (``close``)
    when no thread ever started.
    """

    def __init__(self, fd: int, name: str, kind: str, size: int) -> None:
        self.name = name
        self.kind = kind
        self.size = size
        self._fd = fd
        self._claim = threading.Lock()

    @contextmanager
    def reading(self) -> Iterator[BinaryIO]:
        """The file, to read from start to end, as it was when its size was checked: grown
        since, it still ends there (``CappedFile``); closed when done. ``DeadlinePassed`` when
        the request has already been answered and closed it."""
        if not self._claim.acquire(blocking=False):
            raise DeadlinePassed
        with io.BufferedReader(CappedFile(self._fd, self.size)) as handle:
            yield cast(BinaryIO, handle)

    def close(self) -> None:
        """Close the file unless a thread has claimed it to read (that thread closes it)."""
        if self._claim.acquire(blocking=False):
            os.close(self._fd)

    def __enter__(self) -> ClientFile:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def open_client_file(directory: os.PathLike[str] | str, name: str, max_bytes: int) -> ClientFile:
    """``name``, a path relative to ``directory``, opened as a regular file of a served format
    and at most ``max_bytes``; else a 400 (413 for the size) that names only what the client
    sent, never where the server keeps its files."""
    _check_name(name)
    try:
        root = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the operator's: links ok
    except OSError as exc:
        raise ScorerError(f"{SETTING} cannot be opened: {exc.strerror}") from None
    try:
        fd, last = _walk(root, name)
    finally:
        os.close(root)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequest(f"file {name!r} is not a regular file in {SETTING}")
        kind = SERVED_FORMATS.get(PurePosixPath(last).suffix.lower())
        if kind is None:
            raise InvalidRequest(
                f"file {name!r}: unknown format; use one of {', '.join(sorted(SERVED_FORMATS))}"
            )
        if info.st_size > max_bytes:
            raise FileTooLarge(f"file {name!r} is larger than SCORER_MAX_REQUEST_BYTES ({max_bytes} bytes)")
    except BaseException:
        os.close(fd)
        raise
    return ClientFile(fd, name, kind, info.st_size)


def _check_name(name: str) -> None:
    if "\0" in name:
        raise InvalidRequest("file name must not hold a NUL byte (%00)")
    if name.startswith(("/", "\\")):
        raise InvalidRequest(f"file must be a path relative to {SETTING}, not an absolute one")
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:
        raise InvalidRequest("file name is not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise InvalidRequest(f"file name is too long ({size} bytes; a path holds at most {MAX_NAME_BYTES})")


def _walk(root: int, name: str) -> tuple[int, str]:
    """The descriptor of the last name of ``name`` under ``root``, and that name (a link's
    target's, where the last name was a link). Each directory on the way is held open, so
    ``..`` goes back to the one the walk came through, never above ``root``."""
    held = [os.dup(root)]
    pending = [part for part in reversed(name.split("/"))]
    links = 0
    try:
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(held) == 1:
                    raise InvalidRequest(f"file {name!r} is outside {SETTING}")
                os.close(held.pop())
                continue
            last = not any(p not in ("", ".") for p in pending)
            try:
                fd = os.open(part, _FILE if last else _DIRECTORY, dir_fd=held[-1])
            except OSError as exc:
                target = _link_target(part, held[-1])
                if target is None:
                    raise _refusal(exc, name) from None
                links += 1
                if links > MAX_LINKS:
                    raise InvalidRequest(f"file {name!r}: too many levels of symbolic links") from None
                if target.startswith("/"):
                    raise InvalidRequest(
                        f"file {name!r} is outside {SETTING} (an absolute symbolic link)"
                    ) from None
                pending.extend(reversed(target.split("/")))
                continue
            if last:
                return fd, part
            held.append(fd)
        raise InvalidRequest(f"file {name!r} is not a regular file in {SETTING}")
    finally:
        for fd in held:
            os.close(fd)


def _link_target(part: str, directory: int) -> str | None:
    """Where the link ``part`` points, or None when it is no link (any more)."""
    try:
        return os.readlink(part, dir_fd=directory)
    except OSError:
        return None


def _refusal(exc: OSError, name: str) -> ScorerError:
    """The client's answer for a failed open: its name and the reason, never the server's path."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return InvalidRequest(f"file {name!r} does not exist in {SETTING}")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidRequest("file name is too long (a part of it is over 255 bytes)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InvalidRequest(f"file {name!r} cannot be opened: permission denied")
    if exc.errno in _NOT_A_FILE:
        return InvalidRequest(f"file {name!r} is not a regular file in {SETTING}")
    if exc.errno == errno.ELOOP:  # a link when opened (O_NOFOLLOW), none by the time it was read
        return InvalidRequest(f"file {name!r} changed while it was being opened; try again")
    if exc.errno == errno.EWOULDBLOCK:  # O_NONBLOCK against a lease someone in the directory holds
        return InvalidRequest(f"file {name!r} cannot be opened: it is in use; try again")
    # The server's own trouble (I/O, descriptors run out): a 500, still without its paths.
    return ScorerError(f"file {name!r} cannot be opened: {os.strerror(exc.errno or errno.EIO)}")
