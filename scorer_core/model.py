"""ServedModel: a loaded runtime plus everything the server derives from it once, at load time."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scorer_core.errors import ConfigurationError, ModelError, ScorerError
from scorer_core.headers import HeaderForwarding
from scorer_core.runtime import Runtime
from scorer_core.schema import Capabilities, ModelSchema
from scorer_core.settings import Settings
from scorer_core.shapley import ShapleyPolicy

if TYPE_CHECKING:
    from scorer_core.workers.pool import WorkerPool

__all__ = ["ServedModel", "load_model"]

log = logging.getLogger(__name__)


class ServedModel:
    """The model being served: its runtime, schema, id, capabilities and the operator's policies."""

    def __init__(self, runtime: Runtime, path: Path, settings: Settings) -> None:
        schema = getattr(runtime, "schema", None)
        if not isinstance(schema, ModelSchema):
            raise ConfigurationError(
                f"Runtime '{runtime.name}' loaded '{path}' but did not set a ModelSchema on .schema"
            )
        if runtime.sample_row is not None and len(runtime.sample_row) != len(schema.inputs):
            raise ConfigurationError(
                f"Runtime '{runtime.name}' set a sample_row of {len(runtime.sample_row)} cells for "
                f"{len(schema.inputs)} input fields"
            )
        self.runtime = runtime
        self.runtime_name = runtime.name
        self.path = path
        self.schema: ModelSchema = schema
        self.model_id: str = settings.model_id or runtime.model_id or path.stem or path.name
        self.capabilities: Capabilities = runtime.capabilities
        self.shapley = ShapleyPolicy.from_settings(
            settings.shapley_enable, settings.shapley_types_enabled, runtime.default_shapley_types
        )
        self.forwarding: HeaderForwarding = settings.header_forwarding
        self.missing_values = runtime.missing_values
        #: The worker processes that run the model, when BATCH_WORKERS > 0; else it runs here.
        self.executor: WorkerPool | None = None

    @property
    def wire_capabilities(self) -> list[str]:
        return self.capabilities.to_wire(self.shapley.ordered())

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
        try:
            self.runtime.close()
        except Exception:
            log.exception("Runtime '%s' failed to close", self.runtime_name)


def load_model(runtime_cls: type[Runtime], path: Path, settings: Settings) -> ServedModel:
    """Instantiate and load a runtime; failures name the runtime and the path."""
    started = time.perf_counter()
    runtime = runtime_cls()
    try:
        runtime.load(path)
    except ScorerError:
        raise
    except Exception as exc:
        raise ModelError(
            f"Runtime '{runtime_cls.name}' failed to load '{path}': {type(exc).__name__}: {exc}",
            runtime=runtime_cls.name,
        ) from exc
    model = ServedModel(runtime, path, settings)
    log.info(
        "Loaded '%s' with runtime '%s' in %.2f s: %d inputs, %d outputs, capabilities %s",
        path,
        runtime_cls.name,
        time.perf_counter() - started,
        len(model.schema.inputs),
        len(model.schema.outputs),
        model.wire_capabilities,
    )
    return model
