"""``SCORER_MODEL_WATCH``: replace the model when a new version appears at the start-up path.

A deploy copies the new version over the model path; the watch polls it and reloads once the
copy is complete. What counts as a new version: the path's marker file (``MARKER``, written last
by a deploy that knows about it) when it has one, else every file's size and modification time.
Either must have changed since the version served, and then stayed the same for one more poll,
so that a copy still in progress is never loaded. A version that fails to load is not tried
again; the next change is (a failure never stops the watch).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from scorer_core.errors import ScorerError
from scorer_core.service.replacement import ModelReplacement

__all__ = ["MARKER", "ModelWatch", "version_of"]

log = logging.getLogger(__name__)

#: A file in a model directory whose change, alone, announces a new version.
MARKER = ".scorer-version"
#: Files looked at in a model directory, at most: a model is a few files, not a data lake.
MAX_FILES = 10_000

Version = tuple[object, ...]


def version_of(path: Path) -> Version:
    """What tells versions of ``path`` apart: the marker's content and time when it has one,
    else each file's name, size and modification time; ``()`` while there is nothing there."""
    try:
        if path.is_dir():
            marker = path / MARKER
            if marker.is_file():
                stat = marker.stat()
                return ("marker", marker.read_bytes()[:4096], stat.st_mtime_ns)
            found: list[tuple[str, int, int]] = []
            for root, directories, files in os.walk(path):
                directories.sort()
                for name in sorted(files):
                    stat = os.stat(os.path.join(root, name))
                    found.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
                    if len(found) >= MAX_FILES:
                        return ("files", *found)
            return ("files", *found)
        stat = path.stat()
        return ("file", stat.st_size, stat.st_mtime_ns)
    except OSError:
        return ()  # being replaced (removed, renamed): not a version yet


class ModelWatch:
    """Polls ``replacement``'s start-up path every ``seconds`` and reloads on a new version."""

    def __init__(self, replacement: ModelReplacement, seconds: float) -> None:
        self._replacement = replacement
        self._path = replacement.startup_path
        self._seconds = seconds

    async def run(self) -> None:
        """Until cancelled (the server's stop)."""
        served = await asyncio.to_thread(version_of, self._path)
        seen = served
        log.info("Watching '%s' for new versions every %g s", self._path, self._seconds)
        while True:
            await asyncio.sleep(self._seconds)
            try:
                now = await asyncio.to_thread(version_of, self._path)
            except Exception:
                log.exception("Looking at '%s' for a new version failed", self._path)
                continue
            stable = now == seen
            seen = now
            if not now or now == served or not stable:
                continue  # nothing there, the version served, or a copy still changing
            served = now
            log.info("A new version of '%s' is complete: loading it", self._path)
            try:
                await self._replacement.reload(trigger="watch")
            except ScorerError:
                pass  # logged, counted and kept as the last failure by the replacement
            except Exception:
                log.exception("Loading the new version of '%s' failed", self._path)
