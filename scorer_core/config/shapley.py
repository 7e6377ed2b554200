"""Which Shapley types are enabled, from ``SHAPLEY_ENABLE`` and ``SHAPLEY_TYPES_ENABLED``.

H2O's Java scorer: ``SHAPLEY_ENABLE=true`` (any case) enables every type; otherwise
``SHAPLEY_TYPES_ENABLED`` names one of ALL, ORIGINAL, TRANSFORMED or NONE; with neither set,
none is enabled. A runtime may declare another default (``Runtime.default_shapley_types``) for
models whose contributions H2O auto-detects, as the DAI MOJO scorer does.
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
        runtime_default: frozenset[ShapleyType] = frozenset(),
    ) -> ShapleyPolicy:
        if shapley_enable is not None and shapley_enable.strip().lower() == "true":
            return cls(_BOTH, "SHAPLEY_ENABLE=true")
        if shapley_types_enabled is not None and shapley_types_enabled.strip():
            value = shapley_types_enabled.strip()
            if value not in SHAPLEY_CHOICES:
                raise ConfigurationError(
                    f"SHAPLEY_TYPES_ENABLED={value!r} is not valid; expected one of "
                    f"{', '.join(SHAPLEY_CHOICES)}"
                )
            enabled = _BOTH if value == "ALL" else _BOTH & {ShapleyType(value)}
            return cls(frozenset(enabled), f"SHAPLEY_TYPES_ENABLED={value}")
        return cls(frozenset(runtime_default), "the runtime's default")

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
