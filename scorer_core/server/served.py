"""``served_model``: the app ``scorer serve`` runs, made for any ASGI host.

``scorer serve`` hands it to uvicorn; ``scorer_ray`` (integrations/ray) hands it to each Ray Serve
replica. Both get the same request path, batching, admission and executors, so the HTTP API is
the same wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scorer_core.config.plugins import load_plugins
from scorer_core.config.selection import resolve_model
from scorer_core.config.settings import Settings
from scorer_core.execution.executors import start_executor
from scorer_core.server.app import create_app
from scorer_core.server.front import ScorerApp
from scorer_core.service.host import ModelHost
from scorer_core.service.replacement import ModelReplacement

__all__ = ["ServedModel", "served_model"]


@dataclass(frozen=True)
class ServedModel:
    """The ASGI app and the host of its model (``host.load()`` loads it; the app's start-up
    does so in the background when nobody has)."""

    app: ScorerApp
    host: ModelHost
    path: Path
    runtime: str


def served_model(settings: Settings, *, on_load_failure: Callable[[], None] | None = None) -> ServedModel:
    """The configured model's app. Every configuration error (no model, an unknown runtime, a
    bad credential setting) is raised here, before anything listens or loads."""
    plugins = load_plugins(settings)
    path, runtime_name = resolve_model(settings, plugins)
    runtime_cls = plugins.select_runtime(path, runtime_name)
    runtime_cls.check_model(path)
    host: ModelHost = ModelHost(
        lambda: start_executor(plugins, runtime_cls.name, path, settings, on_starting=host.starting)
    )
    app = create_app(  # checks credentials
        settings,
        host,
        on_load_failure=on_load_failure,
        replacement=lambda plane: ModelReplacement(
            host, plane, plugins, settings, path=path, runtime=runtime_cls.name
        ),
    )
    return ServedModel(app, host, path, runtime_cls.name)
