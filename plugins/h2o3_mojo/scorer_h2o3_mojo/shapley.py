"""Which Shapley outputs an H2O-3 MOJO gives, and how ORIGINAL and TRANSFORMED map onto them.

genmodel computes TreeSHAP contributions for tree models (GBM, DRF, XGBoost) with binomial or
regression outputs; it refuses multinomial models, as H2O-3 itself does. GBM and DRF split on
categorical columns directly, so their contributions are already per input column: that is
ORIGINAL, and there is no separate TRANSFORMED view. XGBoost one-hot encodes categorical columns,
so genmodel returns one contribution per level (H2O-3's ``output_format="original"``): that is
TRANSFORMED, and ORIGINAL sums the levels of each input column (H2O-3's ``"compact"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scorer_core import ConfigurationError, ShapleyType

__all__ = ["BIAS_TERM", "ContributionLayout"]

BIAS_TERM = "BiasTerm"
_MISSING_LEVEL = "missing(NA)"


@dataclass(frozen=True)
class ContributionLayout:
    """genmodel's contribution names, and for one-hot models the input column each belongs to."""

    names: tuple[str, ...]
    #: For one-hot (XGBoost) models: ``group_of[i]`` is the input column of ``names[i]``.
    group_of: tuple[str, ...] | None = None

    @classmethod
    def for_model(
        cls, names: Sequence[str], inputs: Sequence[str], one_hot_domains: Mapping[str, Sequence[str]] | None
    ) -> ContributionLayout:
        """``one_hot_domains``: the categorical inputs' levels for one-hot models, else None."""
        if one_hot_domains is None:
            return cls(tuple(names))
        owner = {name: name for name in (*inputs, BIAS_TERM)}
        for column, levels in one_hot_domains.items():
            owner.update({f"{column}.{level}": column for level in (*levels, _MISSING_LEVEL)})
        unknown = [name for name in names if name not in owner]
        if unknown:
            raise ConfigurationError(f"Cannot tell which input column the contributions {unknown} belong to")
        return cls(tuple(names), tuple(owner[name] for name in names))

    @property
    def supported(self) -> frozenset[ShapleyType]:
        if self.group_of is None:
            return frozenset({ShapleyType.ORIGINAL})
        return frozenset({ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED})

    def features(self, shapley_type: ShapleyType) -> list[str]:
        if shapley_type is ShapleyType.ORIGINAL and self.group_of is not None:
            return list(dict.fromkeys(self.group_of))
        return list(self.names)

    def view(self, values: np.ndarray, shapley_type: ShapleyType) -> np.ndarray:
        """``values`` (``rows x len(names)``, as genmodel returned them) for ``shapley_type``."""
        if shapley_type is ShapleyType.TRANSFORMED or self.group_of is None:
            return values
        features = self.features(ShapleyType.ORIGINAL)
        index = {name: i for i, name in enumerate(features)}
        owner = np.fromiter((index[g] for g in self.group_of), dtype=np.int64, count=len(self.group_of))
        # H2O-3 adds the levels' float32 contributions in float32; so does this, to give its numbers.
        compact = np.zeros((values.shape[0], len(features)), dtype=np.float32)
        for column, group in enumerate(owner):
            compact[:, group] += values[:, column]
        return compact
