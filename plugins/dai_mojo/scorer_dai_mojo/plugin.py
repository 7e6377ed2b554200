"""Hook implementations registering ``dai-mojo-scorer``."""

from __future__ import annotations

from scorer_core import Runtime, hookimpl
from scorer_dai_mojo.runtime import DaiMojoRuntime


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [DaiMojoRuntime]
