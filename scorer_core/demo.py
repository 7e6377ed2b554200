"""The demo model ``scorer serve`` runs when it is given no model path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoModel"]


@dataclass(frozen=True)
class DemoModel:
    """A small real model a plugin can build on the spot from data inside an installed package.

    ``build(directory)`` writes the model under ``directory`` (empty, created by the core) and
    returns the path to serve. The core caches the result, so it is built once per machine.
    """

    name: str
    runtime: str
    description: str
    build: Callable[[Path], Path]
