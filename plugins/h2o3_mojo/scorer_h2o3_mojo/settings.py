"""h2o3-mojo-scorer's settings: every environment variable the plugin reads, typed, checked at start-up.

H2O's Java scorer read its MOJO from ``SCORER_MOJO_PATH`` or the ``-Dmojo.path`` system property
in ``JAVA_OPTS`` / ``JAVA_TOOL_OPTIONS``; deployments migrated from it keep working unchanged.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import Field, field_validator

from scorer_core import EnvSettings

__all__ = ["H2O3Settings"]

_PROPERTY = "-Dmojo.path="


class H2O3Settings(EnvSettings):
    """Where the MOJO, the genmodel classes, the JVM and the compiled helper come from."""

    mojo_path: str = Field("", validation_alias="SCORER_MOJO_PATH")
    """The MOJO to serve when neither the command line nor ``MODEL_PATH`` names one (H2O's name)."""

    java_opts: str = Field("", validation_alias="JAVA_OPTS")
    """JVM options (``-Xmx4g``, ``-D...``), as H2O's Java scorer was started with."""

    java_tool_options: str = Field("", validation_alias="JAVA_TOOL_OPTIONS")
    """Read for ``-Dmojo.path`` only; the JVM itself applies the rest."""

    genmodel_jar: Path | None = Field(None, validation_alias="H2O_GENMODEL_JAR")
    """A jar holding ``hex.genmodel`` to use instead of the one inside the ``h2o`` package."""

    cache_dir: Path | None = Field(None, validation_alias="SCORER_H2O3_CACHE")
    """Where the compiled batch helper is cached (default ``$XDG_CACHE_HOME/scorer-h2o3-mojo``)."""

    xdg_cache_home: Path | None = Field(None, validation_alias="XDG_CACHE_HOME")
    """The user's cache root, under which the default cache lives."""

    helper_dir: Path | None = Field(None, validation_alias="SCORER_H2O3_HELPER_DIR")
    """A directory holding the helper compiled ahead of time, for images with a JRE but no JDK."""

    java_home: Path | None = Field(None, validation_alias="JAVA_HOME")
    """The JDK whose ``javac`` compiles the helper (else ``javac`` on PATH)."""

    @field_validator("java_opts", "java_tool_options")
    @classmethod
    def _shell_words(cls, value: str) -> str:
        shlex.split(value)  # an unbalanced quote is reported here, naming the variable
        return value

    @property
    def jvm_options(self) -> list[str]:
        return shlex.split(self.java_opts)

    def configured_mojo(self) -> tuple[Path, str] | None:
        """The MOJO path H2O's Java scorer would have read, and where it came from."""
        if self.mojo_path.strip():
            return Path(self.mojo_path.strip()), "SCORER_MOJO_PATH"
        for variable, value in (("JAVA_OPTS", self.java_opts), ("JAVA_TOOL_OPTIONS", self.java_tool_options)):
            for option in shlex.split(value):
                found = option[len(_PROPERTY) :] if option.startswith(_PROPERTY) else ""
                if found:
                    return Path(found), f"-Dmojo.path in {variable}"
        return None

    def cache_root(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir.expanduser()
        return (self.xdg_cache_home or Path.home() / ".cache") / "scorer-h2o3-mojo"
