"""scorer_core runtime for Driverless AI MOJO pipelines (dai-mojo-scorer), scored with daimojo."""

from __future__ import annotations

from scorer_dai_mojo.runtime import DaiMojoRuntime
from scorer_dai_mojo.settings import DaiSettings

__all__ = ["DaiMojoRuntime", "DaiSettings"]
