"""Contribution columns of a multiclass model, split into H2O's one group per class.

Pipelines that explain several outputs at once (Driverless AI's) name each contribution column
``<feature>.<class>``. H2O's scorer answers with one ``ContributionGroup`` per class: the group is
named by the part of the class's output column after its last ``.``, and its features are the
contribution columns with that suffix removed. Every runtime with such output uses this one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scorer_core.errors import ConfigurationError
from scorer_core.runtime import ContributionGroup, Contributions

__all__ = ["group_by_class"]


def group_by_class(names: Sequence[str], values: np.ndarray, class_outputs: Sequence[str]) -> Contributions:
    """Split ``values`` (``rows x len(names)``) into one group per output column in ``class_outputs``.

    ``class_outputs`` are the model's per-class output columns (``species.setosa``, ...); with one
    or none, the contributions form a single group without ``outputGroup``.
    """
    if len(class_outputs) < 2:
        return Contributions(list(names), [ContributionGroup(None, values)])
    groups: list[ContributionGroup] = []
    features: list[str] | None = None
    for output in class_outputs:
        label = output.rsplit(".", 1)[-1]
        suffix = f".{label}"
        columns = [i for i, name in enumerate(names) if name.endswith(suffix)]
        stripped = [names[i][: -len(suffix)] for i in columns]
        if features is None:
            features = stripped
        elif stripped != features:
            raise ConfigurationError(
                f"Contribution columns for class '{label}' are {stripped}, but for the first class "
                f"{features}; every class must explain the same features"
            )
        groups.append(ContributionGroup(label, values[:, columns]))
    assert features is not None
    if len(features) * len(class_outputs) != len(names):
        raise ConfigurationError(
            f"Contribution columns {list(names)} do not split into one group per class of "
            f"{list(class_outputs)}"
        )
    return Contributions(features, groups)
