"""The ``MLmodel`` descriptor: found, parsed and checked without importing MLflow.

``check_mlmodel`` runs before the server starts listening, so that a model MLflow could never
load stops ``scorer serve`` with one line naming the file and the fault, not a traceback from a
background load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scorer_core import ConfigurationError

__all__ = [
    "MLMODEL_FILE",
    "NO_SIGNATURE_FIX",
    "PYFUNC_FLAVOR",
    "check_mlmodel",
    "mlmodel_file",
    "read_mlmodel",
]

MLMODEL_FILE = "MLmodel"
PYFUNC_FLAVOR = "python_function"
#: Keys of the python_function flavor that name a file or directory beside MLmodel.
_PYFUNC_PATH_KEYS = ("model_path", "data", "python_model")
#: How to save a model the runtime can type requests for; said wherever a signature is missing.
NO_SIGNATURE_FIX = "save it with signature=mlflow.models.infer_signature(X, model.predict(X))"


def mlmodel_file(path: Path) -> Path | None:
    """``path``'s MLmodel file: ``path/MLmodel`` for a model directory, or ``path`` itself."""
    if path.is_dir():
        candidate = path / MLMODEL_FILE
        return candidate if candidate.is_file() else None
    return path if path.name == MLMODEL_FILE and path.is_file() else None


def read_mlmodel(mlmodel: Path) -> Mapping[str, Any]:
    """The parsed MLmodel document; ``ConfigurationError`` naming the file when it is not one."""
    import yaml  # light, and an MLflow dependency

    try:
        text = mlmodel.read_text()
    except OSError as exc:
        raise ConfigurationError(f"Cannot read '{mlmodel}': {exc.strerror or exc}") from None
    # libyaml's parser where PyYAML has it (its wheels do): the pure-Python one took about 3 ms a
    # read, and a replacement reads the file three times while scoring goes on, competing for the
    # GIL. A document it refuses is parsed again by the pure-Python parser, whose message (the
    # same on every install) is the one shown.
    try:
        document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigurationError(f"'{mlmodel}' is not valid YAML{at}: {problem}") from None
    if not isinstance(document, Mapping):
        raise ConfigurationError(
            f"'{mlmodel}' is not an MLmodel descriptor: expected a YAML mapping with 'flavors', "
            f"got {type(document).__name__}"
        )
    return document


def check_mlmodel(path: Path) -> Mapping[str, Any]:
    """The MLmodel document of ``path``; ``ConfigurationError`` unless it is an MLflow model that
    pyfunc can load.

    Checked: the MLmodel file exists and is valid YAML, it has a ``python_function`` flavor,
    every file that flavor names exists, and it declares an input signature (without one,
    request cells cannot be typed, and ``load`` would refuse it only after the server listens).
    """
    mlmodel = mlmodel_file(path)
    if mlmodel is None:
        raise ConfigurationError(f"'{path}' is not an MLflow model directory (no {MLMODEL_FILE} file)")
    document = read_mlmodel(mlmodel)
    flavors = document.get("flavors")
    if not isinstance(flavors, Mapping) or not flavors:
        raise ConfigurationError(f"'{mlmodel}' declares no flavors, so MLflow cannot load the model")
    pyfunc = flavors.get(PYFUNC_FLAVOR)
    if not isinstance(pyfunc, Mapping):
        raise ConfigurationError(
            f"'{mlmodel}' has no {PYFUNC_FLAVOR} flavor (it has: {', '.join(map(str, flavors))}), so it "
            "cannot be served as a pyfunc model; save it with the flavor's save_model (for example "
            "mlflow.sklearn.save_model), which adds one"
        )
    for key in _PYFUNC_PATH_KEYS:
        value = pyfunc.get(key)
        if isinstance(value, str) and value and not (mlmodel.parent / value).exists():
            raise ConfigurationError(
                f"'{mlmodel}' names the model file '{value}' ({PYFUNC_FLAVOR}.{key}), which does not "
                f"exist in '{mlmodel.parent}'"
            )
    signature = document.get("signature")
    inputs = signature.get("inputs") if isinstance(signature, Mapping) else None
    if not (isinstance(inputs, str) and inputs.strip() not in ("", "null", "[]")):
        raise ConfigurationError(
            f"'{mlmodel}' has no input signature, so request cells cannot be typed; {NO_SIGNATURE_FIX}"
        )
    return document
