"""``ModelFacts``: what is known about the loaded model, apart from the code that runs it.

The server validates requests and shapes responses from these facts alone; executors hold the
``Runtime`` that computes. Facts are frozen and picklable, because a worker process that loads
the model sends them to the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scorer_core.config.forwarding import HeaderForwarding
from scorer_core.config.settings import Settings
from scorer_core.config.shapley import ShapleyPolicy
from scorer_core.errors import ConfigurationError
from scorer_core.runtime import Runtime
from scorer_core.schema import Capabilities, ModelSchema

__all__ = ["ModelFacts"]


@dataclass(frozen=True)
class ModelFacts:
    """The served model's schema, id and capabilities, and the operator's policies for it."""

    runtime: str
    path: Path
    schema: ModelSchema
    model_id: str
    #: The name the Open Inference Protocol addresses the model by (``/v2/models/<name>``).
    model_name: str
    capabilities: Capabilities
    shapley: ShapleyPolicy
    forwarding: HeaderForwarding
    missing_values: frozenset[str] | None
    #: One row of input cells the model scores, for ``/model/sample_request``.
    sample_row: tuple[str, ...]

    @classmethod
    def of(cls, runtime: Runtime, path: Path, settings: Settings) -> ModelFacts:
        """The facts of a runtime whose ``load`` has returned; a runtime that broke its contract
        (no schema, a sample row of the wrong width) is a configuration error naming it."""
        schema = getattr(runtime, "schema", None)
        if not isinstance(schema, ModelSchema):
            raise ConfigurationError(
                f"Runtime '{runtime.name}' loaded '{path}' but did not set a ModelSchema on .schema"
            )
        sample_row = runtime.example_row()
        if len(sample_row) != len(schema.inputs):
            raise ConfigurationError(
                f"Runtime '{runtime.name}' set a sample_row of {len(sample_row)} cells for "
                f"{len(schema.inputs)} input fields"
            )
        return cls(
            runtime=runtime.name,
            path=path,
            schema=schema,
            model_id=settings.model_id or runtime.model_id or path.stem or path.name,
            model_name=settings.model_name or _name_of(path),
            capabilities=runtime.capabilities,
            shapley=ShapleyPolicy.from_settings(settings.shapley_enable, settings.shapley_types_enabled),
            forwarding=settings.header_forwarding,
            missing_values=runtime.missing_values,
            sample_row=tuple(sample_row),
        )

    @property
    def model_version(self) -> str:
        """The version the Open Inference Protocol reports: the model's id, as H2O names a
        model's version."""
        return self.model_id

    @property
    def wire_capabilities(self) -> list[str]:
        """``/model/capabilities``: what the model supports, narrowed by the Shapley settings."""
        return self.capabilities.to_wire(self.shapley.ordered())


def _name_of(path: Path) -> str:
    """A model directory's name, a model file's without its suffix, made safe for a URL path."""
    name = path.name if path.is_dir() else path.stem
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip(".-")
    return safe or "model"
