"""Hook implementations registering ``h2o3-mojo-scorer`` and the MOJO path H2O's scorer read."""

from __future__ import annotations

from scorer_core import ConfiguredModel, Runtime, hookimpl
from scorer_h2o3_mojo.location import configured_mojo
from scorer_h2o3_mojo.model import H2O3MojoRuntime


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [H2O3MojoRuntime]


@hookimpl
def scorer_configured_models() -> list[ConfiguredModel]:
    configured = configured_mojo()
    return [configured] if configured else []
