"""Which Shapley types are enabled, from ``SHAPLEY_ENABLE`` and ``SHAPLEY_TYPES_ENABLED``.

Exactly as H2O's Java scorers read them (``ShapleyLoadOption``): ``SHAPLEY_ENABLE`` is true only
when it is ``true`` in any letter case (Java's ``Boolean.parseBoolean``: no trimming, ``1`` and
``yes`` are false), and then every type is enabled whatever else is set; otherwise
``SHAPLEY_TYPES_ENABLED``, when set at all, must be exactly ALL, ORIGINAL, TRANSFORMED or NONE
(Java's ``valueOf``: case-sensitive, no trimming, an empty value is an error); with neither,
none is enabled, whatever the model supports: contributions cost a model call each, so they are
the operator's to turn on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scorer_core.errors import ConfigurationError, InvalidRequest, UnsupportedOperation
from scorer_core.schema import ShapleyType

__all__ = ["SHAPLEY_CHOICES", "ShapleyPolicy"]

SHAPLEY_CHOICES = ("ALL", "ORIGINAL", "TRANSFORMED", "NONE")
_BOTH = frozenset({ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED})


@dataclass(frozen=True)
class ShapleyPolicy:
    """The Shapley types the operator enabled, and the reason, for error messages."""

    enabled: frozenset[ShapleyType]
    source: str

    @classmethod
    def from_settings(
        cls,
        shapley_enable: str | None,
        shapley_types_enabled: str | None,
    ) -> ShapleyPolicy:
        if shapley_enable is not None and shapley_enable.lower() == "true":
            return cls(_BOTH, "SHAPLEY_ENABLE=true")
        if shapley_types_enabled is not None:
            value = shapley_types_enabled
            if value not in SHAPLEY_CHOICES:
                raise ConfigurationError(
                    f"SHAPLEY_TYPES_ENABLED={value!r} is not valid; expected one of "
                    f"{', '.join(SHAPLEY_CHOICES)}"
                )
            enabled = _BOTH if value == "ALL" else _BOTH & {ShapleyType(value)}
            return cls(frozenset(enabled), f"SHAPLEY_TYPES_ENABLED={value}")
        return cls(frozenset(), "the default: neither SHAPLEY_ENABLE nor SHAPLEY_TYPES_ENABLED is set")

    def ordered(self) -> list[ShapleyType]:
        return [t for t in (ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED) if t in self.enabled]

    def check(
        self, requested: ShapleyType, supported: Sequence[ShapleyType] | frozenset[ShapleyType]
    ) -> None:
        """Raise unless ``requested`` contributions can be computed for this model."""
        if requested is ShapleyType.NONE:
            return
        if requested not in supported:
            raise UnsupportedOperation(
                f"Shapley contributions of type {requested.value} are not supported by this model"
            )
        if requested not in self.enabled:
            raise InvalidRequest(
                f"Shapley contributions of type {requested.value} are not enabled "
                f"(enabled: {', '.join(t.value for t in self.ordered()) or 'none'}, by "
                f"{self.source}); set SHAPLEY_TYPES_ENABLED={requested.value} or ALL, or "
                "SHAPLEY_ENABLE=true"
            )
