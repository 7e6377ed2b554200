"""scorer_core runtime for Driverless AI MOJO pipelines (dai-mojo-scorer), scored with daimojo."""

from __future__ import annotations

from scorer_dai_mojo.model import DaiMojoRuntime

__all__ = ["DaiMojoRuntime"]
