"""Pinned pip requirements for the models this project saves itself (the demo, Hydrogen Torch's
``packaging.save_model``).

Why not MLflow's inference: given no ``pip_requirements``, ``save_model`` starts a second Python
that loads the model to see what it imports, which took half of the demo's first start (about
2.5 of 5 s) and as much of every Hydrogen Torch model saved. The packages these models need are
known here, so they are written down instead, pinned to the installed versions as MLflow pins
them. ``pickled_distributions`` says which packages a saved model's pickle imports, which such a
list must name.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

from packaging.version import Version

__all__ = ["pickled_distributions", "pinned_requirements"]


def pinned_requirements(distributions: Iterable[str]) -> list[str]:
    """``name==version`` for each installed distribution, in the order given.

    A local version label is dropped (torch's CPU wheel is ``2.13.0+cpu``): no package index
    serves one, and MLflow drops it from the requirements it infers too. A distribution that is
    not installed is a ``PackageNotFoundError`` naming it: a model saved without a package it
    needs would fail only where it is deployed.
    """
    pins = []
    for name in distributions:
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            raise PackageNotFoundError(f"{name} is not installed, and the model needs it") from None
        pins.append(f"{name}=={installed.public}")
    return pins


class _Recording(pickle.Unpickler):
    """Unpickles, recording the top-level module of every global the pickle names."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module.split(".")[0])
        return super().find_class(module, name)


def pickled_distributions(pickled: Path) -> set[frozenset[str]]:
    """For each installed module a pickle imports when loaded (a pyfunc model's
    ``python_model.pkl``), the distributions that provide it: what its requirements must name.

    It loads the pickle, which runs its code: only for a model one trusts, as serving it does.
    Unlike MLflow's inference it names no module the load merely happened to import.
    """
    with pickled.open("rb") as file:
        unpickler = _Recording(file)
        unpickler.load()
    providers = packages_distributions()
    return {frozenset(providers[module]) for module in unpickler.modules if module in providers}
