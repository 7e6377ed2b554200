"""A model path that a plugin found in its own family's configuration (``SCORER_MOJO_PATH``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConfiguredModel"]


@dataclass(frozen=True)
class ConfiguredModel:
    """A model to serve when neither the command line nor ``MODEL_PATH`` names one.

    H2O's runtimes each read their own variable (the H2O-3 MOJO scorer reads ``SCORER_MOJO_PATH``
    or ``-Dmojo.path``), so deployments migrated from them keep working unchanged. ``source`` names
    that variable, so that errors about the path can say where it came from.
    """

    path: Path
    runtime: str
    source: str
