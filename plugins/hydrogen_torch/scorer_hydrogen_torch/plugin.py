"""Hook implementations registering ``hydrogen-torch-scorer``."""

from __future__ import annotations

from scorer_core import Runtime, hookimpl
from scorer_hydrogen_torch.runtime import HydrogenTorchRuntime


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [HydrogenTorchRuntime]
