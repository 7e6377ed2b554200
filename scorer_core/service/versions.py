"""What tells two versions of a model path apart, without loading either.

The watch (``SCORER_MODEL_WATCH``) loads a path again when this changes; a rollback refuses a
path whose files are no longer those of the model it would return to.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MARKER", "Version", "version_of"]

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
