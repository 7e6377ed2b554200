"""``EnvSettings``: typed settings read from environment variables, for the core and for plugins.

A setting is a pydantic field whose aliases are the variables it is read from. ``load`` checks
every field at start-up and turns pydantic's errors into one ``ConfigurationError`` that names
the variable (or the command-line flag) and the bad value, so an operator knows what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from scorer_core.errors import ConfigurationError

__all__ = ["EnvSettings"]

_S = TypeVar("_S", bound="EnvSettings")


class EnvSettings(BaseSettings):
    """Base class for settings read from the environment; subclass it and call ``load()``.

    Name each field's variables with ``Field(default, validation_alias=AliasChoices("VAR", ...))``
    (or a plain string for one variable). Unrelated variables are ignored, a variable set to the
    empty string counts as unset, and the instance is frozen.
    """

    model_config = SettingsConfigDict(
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        validate_default=True,
        case_sensitive=True,
        # Templates (Helm, compose) often set a variable to "": that means unset, not ".".
        env_ignore_empty=True,
    )

    @classmethod
    def variables(cls, field_name: str) -> list[str]:
        """The environment variables a field is read from, in order of precedence."""
        alias = cls.model_fields[field_name].validation_alias
        if isinstance(alias, str):
            return [alias]
        return [c for c in getattr(alias, "choices", []) if isinstance(c, str)] or [field_name]

    @classmethod
    def load(cls: type[_S], flags: Mapping[str, str] | None = None, **overrides: Any) -> _S:
        """Read the environment, with ``overrides`` (``None`` values ignored) taking precedence.

        ``flags`` maps a field to the command-line flag an override came from (``port`` to
        ``--port``), so that an error names what the user typed rather than the variable.
        Raises ``ConfigurationError`` naming every bad value.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "?"
                if flags and field in flags and field in given:
                    source = flags[field]
                elif field in cls.model_fields:
                    source = " / ".join(cls.variables(field))
                else:
                    source = field
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{source}={error.get('input')!r}: {message}")
            raise ConfigurationError("Invalid configuration: " + "; ".join(problems)) from None
