"""scorer_core runtime for H2O-3 MOJOs (h2o3-mojo-scorer), scored in-process by h2o-genmodel."""

from __future__ import annotations

from scorer_h2o3_mojo.runtime import H2O3MojoRuntime
from scorer_h2o3_mojo.settings import H2O3Settings

__all__ = ["H2O3MojoRuntime", "H2O3Settings"]
