"""Hook implementations registering ``h2o3-mojo-scorer`` and the MOJO path H2O's scorer read."""

from __future__ import annotations

from scorer_core import ConfiguredModel, Runtime, hookimpl
from scorer_h2o3_mojo.runtime import H2O3MojoRuntime
from scorer_h2o3_mojo.settings import H2O3Settings


def configured_mojo() -> ConfiguredModel | None:
    """The MOJO that ``SCORER_MOJO_PATH`` or ``-Dmojo.path`` names, as H2O's Java scorer read it."""
    found = H2O3Settings.load().configured_mojo()
    return ConfiguredModel(found[0], H2O3MojoRuntime.name, found[1]) if found else None


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [H2O3MojoRuntime]


@hookimpl
def scorer_configured_models() -> list[ConfiguredModel]:
    configured = configured_mojo()
    return [configured] if configured else []
