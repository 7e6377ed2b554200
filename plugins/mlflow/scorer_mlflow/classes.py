"""Class probability columns named as H2O's scorers name them: ``<label>.<class>``.

A scikit-learn classifier saved with ``pyfunc_predict_fn="predict_proba"`` answers an unnamed
``(n, k)`` array, which the signature turns into ``prediction.0 .. prediction.{k-1}``; a client
of H2O's scorers reads ``species.setosa``. The estimator knows its classes (``classes_``), in the
order of the array's columns, so the columns can carry them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scorer_core import Field

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

__all__ = ["PROBABILITY_FUNCTIONS", "class_column", "estimator_classes", "named_by_class"]

#: scikit-learn's per-class prediction functions that ``mlflow.sklearn`` serves through pyfunc:
#: one column per entry of ``classes_``, in that order.
PROBABILITY_FUNCTIONS = frozenset({"predict_proba", "predict_log_proba", "predict_joint_log_proba"})


def class_column(label: str, class_: object) -> str:
    """H2O's name for the column of one class: ``species.setosa``."""
    return f"{label}.{class_}"


def estimator_classes(pyfunc: PyFuncModel) -> list[str] | None:
    """The classes whose probabilities ``pyfunc`` answers, column by column, or None when it does
    not answer per class or its estimator does not say which classes they are."""
    model: Any = pyfunc  # MLflow leaves these methods untyped
    conf = model.metadata.flavors.get("python_function") or {}
    if conf.get("predict_fn") not in PROBABILITY_FUNCTIONS:
        return None
    try:
        classes = model.get_raw_model().classes_
        names = [str(c) for c in classes]
    except Exception:  # no raw model, not fitted, not a classifier: the names stay positional
        return None
    return names if names and len(set(names)) == len(names) else None


def named_by_class(outputs: Sequence[Field], classes: Sequence[str] | None) -> list[Field]:
    """``outputs`` with positional names (``prediction.0 ..``) replaced by ``prediction.<class>``.

    Names the signature chose (a named output column) are kept: only the runtime's own numbering
    is replaced, and only when there is one column per class.
    """
    if classes is None or len(outputs) != len(classes):
        return list(outputs)
    label = outputs[0].name.rpartition(".")[0]
    if not label or [f.name for f in outputs] != [f"{label}.{i}" for i in range(len(outputs))]:
        return list(outputs)
    return [Field(class_column(label, c), f.data_type) for f, c in zip(outputs, classes, strict=True)]
