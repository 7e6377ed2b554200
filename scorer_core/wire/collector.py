"""Large requests and the garbage collector: pauses around short-lived bursts, releases in chunks.

``collection_paused``: no garbage collection while a burst of short-lived containers exists.

Why: a large request is parsed, and its answer written, tens of thousands of rows at a time.
Each such piece makes as many row lists, alive until the piece is done. A young collection that
runs in the middle of a piece finds them all alive and promotes them, and when enough objects
have been promoted, a full collection walks every object in the server: 40 to 70 ms with the GIL
held, every few pieces, which is what kept the health probes of a server scoring a million rows
waiting. With collection paused for the piece, its lists are freed before any collection sees
them, and the next young collection only has what outlived the piece.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["collection_paused", "release"]


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause automatic collection for a short block (milliseconds: one piece, one chunk).

    The previous state is restored, so a process that turned collection off keeps it off. Other
    threads are not collected meanwhile either, which only delays their collections.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: Items freed per call by ``release``.
_RELEASE_CHUNK = 32 * 1024


def release(items: list[Any]) -> None:
    """Empty a large list a chunk at a time, so that freeing what it holds never holds the GIL
    for long: dropping a million rows of cells at once took 70 ms, all in one call."""
    while items:
        del items[-_RELEASE_CHUNK:]
