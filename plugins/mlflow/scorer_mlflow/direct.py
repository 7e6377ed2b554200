"""Calling a scikit-learn model's own ``predict``, past MLflow's per-call schema enforcement.

``PyFuncModel.predict`` enforces the signature on every call: for a model of 30 float columns
that costs about 1.2 ms a call here, more than the model itself (0.65 ms for one row of the
benchmark's logistic regression, 1.1 ms for 10,000). The server has already typed every cell by
the same signature, so for most batches enforcement would hand the model the very frame it was
given. This module decides, once at load, whether the model is one for which that can be known
(the plain ``mlflow.sklearn`` flavor calling ``predict``, a column signature of required plain
types, no parameters, no type hints), and then, per batch, whether the frame's dtypes are exactly
those enforcement leaves unchanged. Any other batch (an integer column holding a missing value,
say, which enforcement refuses) goes through ``PyFuncModel.predict`` as before, so its answer
and its error text are MLflow's own. ``SCORER_MLFLOW_ENFORCE_EVERY_CALL=1`` turns the shortcut off.

``tests/test_direct_predict.py`` holds the shortcut to ``PyFuncModel.predict`` on every accepted
dtype, with missing values, and on the benchmark set's models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.pyfunc import PyFuncModel
    from mlflow.types import Schema

__all__ = ["ENFORCE_EVERY_CALL_ENV", "DirectPredict", "direct_predict"]

ENFORCE_EVERY_CALL_ENV = "SCORER_MLFLOW_ENFORCE_EVERY_CALL"

#: MLflow column types whose values enforcement passes through unchanged when the column already
#: has this numpy dtype (string columns: see ``_string_dtype``).
_UNCHANGED_DTYPES: dict[str, np.dtype[Any]] = {
    "double": np.dtype(np.float64),
    "float": np.dtype(np.float32),
    "long": np.dtype(np.int64),
    "integer": np.dtype(np.int32),
    "boolean": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class DirectPredict:
    """The estimator's ``predict`` and the dtypes, column by column, for which it may be called."""

    predict: Callable[[Any], Any]
    dtypes: tuple[Any, ...]

    def accepts(self, frame: pd.DataFrame) -> bool:
        """Whether enforcement would return ``frame`` unchanged: every column has its exact dtype."""
        return tuple(frame.dtypes) == self.dtypes


def direct_predict(pyfunc: PyFuncModel, input_schema: Schema) -> DirectPredict | None:
    """The shortcut for ``pyfunc``, or None when enforcement may do more than check dtypes."""
    if os.environ.get(ENFORCE_EVERY_CALL_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    # MLflow's private members: an MLflow that renamed any of them gets no shortcut (enforcement on
    # every call, MLflow's own behaviour), never a load failure. tests/test_direct_predict.py fails
    # loudly, naming the member, when the pinned MLflow changes shape.
    try:
        from mlflow.sklearn import _SklearnModelWrapper
    except ImportError:
        return None
    metadata: Any = pyfunc.metadata  # MLflow leaves these methods untyped
    wrapper: Any = getattr(pyfunc, "_model_impl", None)
    from_type_hint = getattr(metadata, "_is_signature_from_type_hint", None)
    hint_from_example = getattr(metadata, "_is_type_hint_from_example", None)
    if (
        pyfunc.loader_module != "mlflow.sklearn"
        or type(wrapper) is not _SklearnModelWrapper
        or from_type_hint is None
        or hint_from_example is None
        # The flavor's pyfunc_predict_fn may name predict_proba and the like; only predict is the
        # wrapper's own pass-through.
        or getattr(pyfunc, "_predict_fn", None) != wrapper.predict
        or metadata.get_params_schema() is not None
        or from_type_hint()
        or hint_from_example()
        or input_schema.is_tensor_spec()
        or not input_schema.has_input_names()
    ):
        return None
    dtypes = _column_dtypes(input_schema.inputs)
    if dtypes is None:
        return None
    return DirectPredict(wrapper.sklearn_model.predict, dtypes)


def _column_dtypes(specs: Sequence[Any]) -> tuple[Any, ...] | None:
    found = []
    for spec in specs:
        if not getattr(spec, "required", True):
            return None  # enforcement adds a missing optional column; the server never omits one
        name = getattr(getattr(spec, "type", None), "name", None)
        if name == "string":
            found.append(_string_dtype())
        elif name in _UNCHANGED_DTYPES:
            found.append(_UNCHANGED_DTYPES[name])
        else:
            return None
    return tuple(found)


def _string_dtype() -> Any:
    """The dtype pandas gives a column of Python strings and None, as the server builds it
    (``str`` on pandas 3, ``object`` before)."""
    import pandas as pd

    return pd.DataFrame({"c": np.array(["a", None], dtype=object)}, copy=False).dtypes["c"]
