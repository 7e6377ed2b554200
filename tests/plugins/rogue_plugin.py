"""Models that misbehave as real ones do, on top of the probe model (tests/plugins/probe_plugin.py).

A `.rogue` file is a probe spec with one more key, ``rogue``, naming the misbehaviour:

- ``echo``: scoring a ``colour`` it does not know raises a message holding the cell as sent (as
  models built on pandas and scikit-learn often do), so a client's text reaches the logs.
- ``nested``: returns a dict where a column should be.
- ``dict_cells``: returns one dict per row in its ``y`` column.
- ``leave_thread``: its first call starts a thread it never stops (a metrics flusher, a pool it
  never shuts down); the thread is not a daemon, as threads started from a non-daemon one are not.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from probe_plugin import ProbeRuntime

from scorer_core import Frame, hookimpl

#: How long the leftover thread lives: longer than any test waits, bounded all the same.
LEFTOVER_SECONDS = 600.0
KNOWN_COLOURS = frozenset({"red", "green", "blue"})


class RogueRuntime(ProbeRuntime):
    name = "rogue-scorer"

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return path.suffix == ".rogue"

    def load(self, path: Path) -> None:
        super().load(path)
        self._flusher: threading.Thread | None = None

    def score(self, batch: Frame) -> dict[str, Any]:
        rogue = self.spec.get("rogue")
        if rogue == "echo":
            unknown = [c for c in batch["colour"] if c not in KNOWN_COLOURS]
            if unknown:
                raise ValueError(f"Found unknown categories [{', '.join(map(str, unknown))}] in column 0")
            return {"y": np.ones(batch.num_rows)}
        if rogue == "nested":
            return {"y": {"nested": [1, 2, 3]}}
        if rogue == "dict_cells":
            return {"y": [{"nested": [1, 2, 3]}] * batch.num_rows}
        if rogue == "leave_thread" and self._flusher is None:
            self._flusher = threading.Thread(
                target=threading.Event().wait, args=(LEFTOVER_SECONDS,), name="rogue-flusher"
            )
            self._flusher.start()
        return super().score(batch)


@hookimpl
def scorer_register_runtimes() -> list[type[ProbeRuntime]]:
    return [RogueRuntime]
