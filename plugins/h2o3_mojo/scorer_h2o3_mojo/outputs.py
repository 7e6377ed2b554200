"""How genmodel's raw predictions become H2O-3's prediction-frame columns, per model category.

genmodel's ``score0`` writes one array per row whose layout depends on the model category; H2O-3's
own ``predict`` frame names and orders the same values. Each ``OutputLayout`` knows both, so that
``/model/schema`` and every scored row agree with the frame H2O-3 would have produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scorer_core import ConfigurationError, DataType, Field

__all__ = ["SUPPORTED_CATEGORIES", "OutputLayout", "output_layout"]

_CLASSIFIERS = ("Binomial", "Multinomial", "Ordinal")
SUPPORTED_CATEGORIES = (*_CLASSIFIERS, "Regression", "Clustering", "AnomalyDetection")


@dataclass(frozen=True)
class OutputLayout:
    """Output fields and how to read them from the raw ``rows x width`` prediction matrix."""

    fields: tuple[Field, ...]
    width: int
    #: Response labels for classifiers: ``predict`` is ``labels[raw[:, 0]]``.
    labels: tuple[str, ...] = ()

    def columns(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """One column per output field from ``raw`` (``rows x width``)."""
        columns: dict[str, np.ndarray] = {}
        for index, output in enumerate(self.fields):
            values = raw[:, index]
            if index == 0 and self.labels:
                columns[output.name] = np.asarray(self.labels, dtype=object)[values.astype(np.int64)]
            elif output.data_type is DataType.INT32:
                columns[output.name] = values.astype(np.int64)
            else:
                columns[output.name] = values
        return columns


def output_layout(category: str, labels: Sequence[str] | None, preds_size: int) -> OutputLayout:
    """The layout for a model of ``category`` (genmodel's ``ModelCategory`` name)."""
    if category in _CLASSIFIERS:
        if not labels:
            raise ConfigurationError(f"This {category} MOJO has no response labels; it cannot be scored")
        fields = [Field("predict", DataType.STR), *(Field(label, DataType.FLOAT64) for label in labels)]
        return OutputLayout(tuple(fields), 1 + len(labels), tuple(labels))
    if category == "Regression":
        return OutputLayout((Field("predict", DataType.FLOAT64),), 1)
    if category == "Clustering":
        return OutputLayout((Field("predict", DataType.INT32),), 1)
    if category == "AnomalyDetection":
        if preds_size >= 3:  # trained with a contamination threshold: an anomaly flag comes first
            names = [("predict", DataType.INT32), ("score", DataType.FLOAT64)]
        else:
            names = [("predict", DataType.FLOAT64)]
        names.append(("mean_length", DataType.FLOAT64))
        return OutputLayout(tuple(Field(n, t) for n, t in names), len(names))
    supported = ", ".join(SUPPORTED_CATEGORIES)
    raise ConfigurationError(f"h2o3-mojo-scorer does not score {category} MOJOs, only {supported} models")
