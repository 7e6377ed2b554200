"""What loading an MLflow model imports, named without loading it (``Runtime.preload_modules``).

A worker process of a scikit-learn model spent about 2.3 of its 2.7 CPU-seconds of start-up
importing MLflow, pandas and the estimator's modules. Named here, they are imported once by the
process the workers are forked from. The names come from the MLmodel descriptor (the flavor's
loader module, the library of a flavor whose model is no pickle) and from the classes a pickle
names, read from its opcodes: nothing in it runs.
"""

from __future__ import annotations

import pickletools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from scorer_mlflow.mlmodel import mlmodel_file, read_mlmodel

__all__ = ["pickled_modules", "preload_modules"]

#: The library that loads a flavor's model, where that model is no pickle naming its classes.
#: TensorFlow and Keras are left out: they start thread pools when imported, and a process with
#: threads is no safe one to fork.
FLAVOR_LIBRARIES = {
    "catboost": "catboost",
    "lightgbm": "lightgbm",
    "onnx": "onnxruntime",
    "pytorch": "torch",
    "statsmodels": "statsmodels",
    "xgboost": "xgboost",
}
#: The largest pickle read for the modules it names; a larger one is not read.
PICKLE_READ_LIMIT = 256 << 20
#: What reading one pickle may cost (it runs in the server process, also while a model is
#: replaced): the modules named before either runs out are kept. A model's classes are named as
#: its objects are written, mostly long before the bulk of its arrays.
OPCODE_LIMIT = 1_000_000
SECONDS_LIMIT = 0.5
#: The longest string kept as a possible module name.
_LONGEST_NAME = 200
#: Modules a pickle may name that no process imports by name.
_NOT_MODULES = frozenset({"__main__", "__builtin__", "__mp_main__"})


def preload_modules(path: Path) -> list[str]:
    """The modules loading the MLflow model at ``path`` imports, as far as its files say; none for
    a path that is no MLflow model."""
    mlmodel = mlmodel_file(path)
    if mlmodel is None:
        return []
    flavors = read_mlmodel(mlmodel).get("flavors")
    if not isinstance(flavors, dict):
        return []
    modules = ["mlflow.pyfunc"]
    pyfunc = _mapping(flavors.get("python_function"))
    if isinstance(pyfunc.get("loader_module"), str):
        modules.append(pyfunc["loader_module"])
    modules += [FLAVOR_LIBRARIES[flavor] for flavor in flavors if flavor in FLAVOR_LIBRARIES]
    pickles = [pyfunc.get("python_model")]
    sklearn = _mapping(flavors.get("sklearn"))
    if sklearn.get("serialization_format", "cloudpickle") in ("pickle", "cloudpickle"):
        pickles.append(sklearn.get("pickled_model"))
    for name in pickles:
        if isinstance(name, str):
            modules += sorted(pickled_modules(mlmodel.parent / name))
    # The model's own code (code_paths) goes first on the path when it loads: a module of the same
    # name imported before from elsewhere would shadow it.
    own = _code_modules(mlmodel.parent, pyfunc.get("code"))
    return [name for name in dict.fromkeys(modules) if name.split(".")[0] not in own]


def _code_modules(model_dir: Path, code: Any) -> set[str]:
    """The top-level modules and packages in the model's code directory."""
    if not isinstance(code, str):
        return set()
    try:
        return {entry.name.removesuffix(".py") for entry in (model_dir / code).iterdir()}
    except OSError:
        return set()


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def pickled_modules(pickled: Path) -> set[str]:
    """The modules whose classes or functions the pickle at ``pickled`` names, read from its
    opcodes without running any; empty for a file that is missing, too large or no pickle."""
    try:
        if not pickled.is_file() or pickled.stat().st_size > PICKLE_READ_LIMIT:
            return set()
        with pickled.open("rb") as file:
            return {module for module in _globals(file) if module not in _NOT_MODULES}
    except Exception:  # not a pickle pickletools can walk: nothing named, as this is a speed-up only
        return set()


def _globals(file: Any) -> Iterator[str]:
    """The module of every global a pickle names, up to ``OPCODE_LIMIT`` opcodes or
    ``SECONDS_LIMIT``. Protocol 4 and later name one with the two strings pushed last before
    ``STACK_GLOBAL`` (each pushed, or fetched from the memo when it was written before); earlier
    protocols with ``GLOBAL``'s own argument. The memo keeps strings only, and only those short
    enough to name a module."""
    memo: dict[int, str] = {}
    memoized = 0
    pushed: list[str | None] = [None, None]
    deadline = time.monotonic() + SECONDS_LIMIT
    for count, (opcode, arg, _) in enumerate(pickletools.genops(file)):
        if count >= OPCODE_LIMIT or (count % 4096 == 0 and time.monotonic() > deadline):
            return
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            yield str(arg).split(" ", 1)[0]
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            module, _qualname = pushed[-2], pushed[-1]
            if module is not None:
                yield module
            pushed.append(None)
        elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            index = memoized if name == "MEMOIZE" else cast(int, arg)
            memoized += 1
            top = pushed[-1]
            if top is not None and len(top) <= _LONGEST_NAME:
                memo[index] = top
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(cast(int, arg)))
        elif isinstance(arg, str) and ("UNICODE" in name or name.endswith("STRING")):
            pushed.append(str(arg))
        elif name != "FRAME":
            pushed.append(None)
        del pushed[:-2]
