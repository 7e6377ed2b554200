"""dai-mojo-scorer's settings: the Driverless AI licence, from the variables daimojo itself reads."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from scorer_core import ConfigurationError, EnvSettings

__all__ = ["LICENCE_HELP", "DaiSettings"]

LICENCE_HELP = (
    "set DRIVERLESS_AI_LICENSE_KEY to the licence key, or DRIVERLESS_AI_LICENSE_FILE to a file "
    "holding it (daimojo also reads /license/license.sig and ~/.driverlessai/license.sig)"
)


class DaiSettings(EnvSettings):
    """daimojo's C++ core reads the licence from these variables, else from two default files
    (the places it names in its own error text). Without any of them it only says "Driverless AI
    license error!"; ``licence_source`` says which variables to set instead."""

    licence_key: str = Field("", validation_alias="DRIVERLESS_AI_LICENSE_KEY", repr=False)
    """The licence key itself."""

    licence_file: str = Field("", validation_alias="DRIVERLESS_AI_LICENSE_FILE")
    """A file holding the licence key."""

    def licence_source(self) -> str:
        """Where daimojo will find the licence; a ConfigurationError when it will find none."""
        if self.licence_key.strip():
            return "DRIVERLESS_AI_LICENSE_KEY"
        configured = self.licence_file.strip()
        if configured:
            if not Path(configured).expanduser().is_file():
                raise ConfigurationError(
                    f"DRIVERLESS_AI_LICENSE_FILE '{configured}' is not a readable file; {LICENCE_HELP}"
                )
            return f"DRIVERLESS_AI_LICENSE_FILE ({configured})"
        for default in (Path("/license/license.sig"), Path.home() / ".driverlessai" / "license.sig"):
            if default.is_file():
                return str(default)
        raise ConfigurationError(f"dai-mojo-scorer needs a Driverless AI licence: {LICENCE_HELP}")
