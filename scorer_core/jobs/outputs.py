"""Where a batch job writes: never over its input, and under the output's name only once the
job has succeeded.

- ``check_targets`` refuses, before anything is read or written, a file the job would write
  that is its input, one of its parts, inside its directory, or holding it, however it is
  spelt: relative or absolute, ``./``, ``..``, a symlink or a hard link (files are compared by
  device and inode, directories after every link is followed).
- ``StagedFile`` is written under no name at all (Linux's ``O_TMPFILE``): a job that fails, is
  stopped, or dies (a signal, a crashing model, the OOM killer) leaves nothing behind, since
  the kernel frees a file no name points to. Only ``publish`` names it, atomically replacing
  the output. Where the file system cannot do that, a new hidden name in the output's directory
  (``.NAME.<random>.partial``, created exclusively, so never someone else's file) is used
  instead and removed when the job ends in any way Python sees.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

from scorer_core.errors import ConfigurationError

__all__ = ["StagedFile", "check_targets"]

_Identity = tuple[int, int]
_T = TypeVar("_T")


def _identity(path: Path) -> _Identity | None:
    """The file ``path`` names once links are followed (device and inode), if it exists."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


def _within(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies under the directory ``outer`` (at any depth), by identity: so
    ``parts/../parts/x``, a link to ``parts`` and ``parts`` itself all count."""
    directory = _identity(outer)
    if directory is None or not outer.is_dir():
        return False
    return any(_identity(parent) == directory for parent in inner.absolute().resolve().parents)


def check_targets(source: Path, targets: Mapping[str, Path], *, files: bool = True) -> None:
    """Refuse (exit status 2) a target the job would write (keyed by what it is) that is the
    input ``source``, or one of its parts, or lies inside it, or holds it; with ``files``, also
    one that is a directory (the local engine writes files; Spark writes directories)."""
    inputs = {_identity(source)}
    if source.is_dir():
        inputs |= {_identity(entry) for entry in source.iterdir()}
    inputs.discard(None)
    for what, target in targets.items():
        if files and target.is_dir():
            raise ConfigurationError(
                f"the {what} '{target}' is a directory; this engine writes one file: choose a file name"
            )
        same = _identity(target) in inputs or target.absolute().resolve() == source.absolute().resolve()
        if same:
            parts = " or one of its parts" if source.is_dir() else ""
            raise ConfigurationError(
                f"the {what} '{target}' is the input '{source}'{parts}: writing it would destroy the "
                f"input; choose another {what}"
            )
        if _within(target, source):
            raise ConfigurationError(
                f"the {what} '{target}' is inside the input directory '{source}', whose parts are "
                f"all read: choose another {what}"
            )
        if _within(source, target):
            raise ConfigurationError(
                f"the input '{source}' is inside the {what} '{target}', which the job replaces: "
                f"choose another {what}"
            )


class StagedFile:
    """A file written where nothing can see it, and named ``target`` only by ``publish``.

    ``handle`` is open for writing. Use it as a context manager, or call ``discard`` in every
    case: it is a no-op once published."""

    def __init__(self, target: Path) -> None:
        self.target = target
        #: The output's directory, opened once: the file is named in the directory it was
        #: created in, even if that directory is renamed meanwhile.
        try:
            self._directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigurationError(f"cannot write '{target}': {exc.strerror} ('{target.parent}')") from None
        self._name: str | None = None  # the file's name while it has one (the fallback)
        try:
            fd = self._unnamed()
            if fd is None:
                fd, self._name = self._hidden()
        except OSError as exc:
            os.close(self._directory)
            raise ConfigurationError(f"cannot write '{target}': {exc.strerror}") from None
        self.handle: BinaryIO = os.fdopen(fd, "wb")
        self._done = False

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.discard()

    @property
    def named(self) -> bool:
        """Whether the file has a name before ``publish`` (the fallback)."""
        return self._name is not None

    def _unnamed(self) -> int | None:
        """A file in the output's directory that has no name (``O_TMPFILE``), or ``None`` where
        the system or the file system cannot make one or name it later (through ``/proc``)."""
        flag = getattr(os, "O_TMPFILE", None)
        if flag is None or not os.path.isdir("/proc/self/fd"):
            return None
        try:
            return os.open(".", flag | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=self._directory)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return None  # an old kernel, or a file system without it: the fallback
            raise

    def _hidden(self) -> tuple[int, str]:
        return self._fresh(
            lambda name: os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=self._directory
            )
        )

    def _fresh(self, create: Callable[[str], _T]) -> tuple[_T, str]:
        """A name of the output's directory that nothing had, and what ``create(name)`` made
        there: created exclusively, so another file is never taken over."""
        for _ in range(100):
            name = f".{self.target.name}.{secrets.token_hex(6)}.partial"
            try:
                return create(name), name
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.target.parent))

    def publish(self) -> None:
        """Give the written file the target's name, replacing what had it, in one step: a
        reader sees the old file or the whole new one. Written to disk first, so that a crash
        of the machine cannot leave an empty file under the name either."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        if self._name is None:
            source = f"/proc/self/fd/{self.handle.fileno()}"
            # A name first, then the target's: a link cannot replace a file, a rename can.
            _, self._name = self._fresh(
                lambda name: os.link(source, name, dst_dir_fd=self._directory, follow_symlinks=True)
            )
        os.replace(self._name, self.target.name, src_dir_fd=self._directory, dst_dir_fd=self._directory)
        self._name = None
        os.fsync(self._directory)
        self._done = True
        self.discard()

    def discard(self) -> None:
        """Close the file and, unless published, remove it: with no name, closing frees it."""
        if self.handle.closed:
            return
        with suppress(OSError):  # what could not be written is not wanted
            self.handle.close()
        if self._name is not None and not self._done:
            with suppress(FileNotFoundError):
                os.unlink(self._name, dir_fd=self._directory)
        os.close(self._directory)
