"""``SCORER_MODEL_WATCH``: replace the model when a new version appears at the start-up path.

A deploy copies the new version over the model path; the watch polls it and reloads once the
copy is complete. What counts as a new version (``versions.version_of``): the path's marker file,
written last by a deploy that knows about it, when it has one, else every file's size and
modification time.
Either must have changed since the version served, and then stayed the same for one more poll,
so that a copy still in progress is never loaded. A version that fails to load is not tried
again; the next change is (a failure never stops the watch).
"""

from __future__ import annotations

import asyncio
import logging

from scorer_core.errors import ScorerError
from scorer_core.service.replacement import ModelReplacement
from scorer_core.service.versions import version_of

__all__ = ["ModelWatch"]

log = logging.getLogger(__name__)


class ModelWatch:
    """Polls ``replacement``'s start-up path every ``seconds`` and reloads on a new version."""

    def __init__(self, replacement: ModelReplacement, seconds: float) -> None:
        self._replacement = replacement
        self._path = replacement.startup_path
        self._seconds = seconds

    async def run(self) -> None:
        """Until cancelled (the server's stop)."""
        # The version the start-up model is loading, taken before its load began: a copy made
        # while it loads is a new version.
        served = self._replacement.startup_files
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
