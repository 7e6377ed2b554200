"""The Driverless AI licence that daimojo needs, checked before loading so that errors say what to set.

daimojo's C++ core reads the licence from ``DRIVERLESS_AI_LICENSE_KEY`` (the key itself) or
``DRIVERLESS_AI_LICENSE_FILE`` (a file holding it), else from ``/license/license.sig`` or
``~/.driverlessai/license.sig`` (the places it names in its own error text). Without any of them it
only says "Driverless AI license error!"; this module says which variables to set instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from scorer_core import ConfigurationError

__all__ = ["LICENCE_HELP", "licence_source"]

LICENCE_HELP = (
    "set DRIVERLESS_AI_LICENSE_KEY to the licence key, or DRIVERLESS_AI_LICENSE_FILE to a file "
    "holding it (daimojo also reads /license/license.sig and ~/.driverlessai/license.sig)"
)


def _default_files() -> list[Path]:
    return [Path("/license/license.sig"), Path.home() / ".driverlessai" / "license.sig"]


def licence_source() -> str:
    """Where daimojo will find the licence; a ConfigurationError when it will find none."""
    if os.environ.get("DRIVERLESS_AI_LICENSE_KEY", "").strip():
        return "DRIVERLESS_AI_LICENSE_KEY"
    configured = os.environ.get("DRIVERLESS_AI_LICENSE_FILE", "").strip()
    if configured:
        if not Path(configured).expanduser().is_file():
            raise ConfigurationError(
                f"DRIVERLESS_AI_LICENSE_FILE '{configured}' is not a readable file; {LICENCE_HELP}"
            )
        return f"DRIVERLESS_AI_LICENSE_FILE ({configured})"
    for default in _default_files():
        if default.is_file():
            return str(default)
    raise ConfigurationError(f"dai-mojo-scorer needs a Driverless AI licence: {LICENCE_HELP}")
