"""Where H2O's Java H2O-3 scorer read its MOJO path, so that migrated deployments keep working.

``SCORER_MOJO_PATH`` first; else the ``-Dmojo.path=...`` system property the Java scorer was given,
found in ``JAVA_OPTS`` or ``JAVA_TOOL_OPTIONS``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from scorer_core import ConfiguredModel

__all__ = ["RUNTIME_NAME", "configured_mojo"]

RUNTIME_NAME = "h2o3-mojo-scorer"
_PROPERTY = "-Dmojo.path="


def configured_mojo() -> ConfiguredModel | None:
    path = os.environ.get("SCORER_MOJO_PATH", "").strip()
    if path:
        return ConfiguredModel(Path(path), RUNTIME_NAME, "SCORER_MOJO_PATH")
    for variable in ("JAVA_OPTS", "JAVA_TOOL_OPTIONS"):
        for option in shlex.split(os.environ.get(variable, "")):
            value = option[len(_PROPERTY) :] if option.startswith(_PROPERTY) else ""
            if value:
                return ConfiguredModel(Path(value), RUNTIME_NAME, f"-Dmojo.path in {variable}")
    return None
