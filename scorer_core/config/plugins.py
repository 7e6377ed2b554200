"""Plugin discovery through the ``scorer_core.plugins`` entry points, and runtime selection."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from scorer_core import hookspecs
from scorer_core.config.settings import Settings
from scorer_core.configured import ConfiguredModel
from scorer_core.demo import DemoModel
from scorer_core.errors import AmbiguousRuntime, ConfigurationError, NoRuntimeFound, PluginLoadError
from scorer_core.runtime import Runtime

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "Plugins", "load_plugins"]

ENTRY_POINT_GROUP = "scorer_core.plugins"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """What ``scorer plugins`` prints about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    runtimes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "runtimes": self.runtimes,
        }


class Plugins:
    """The loaded plugin manager and the runtimes it registered."""

    def __init__(self, manager: pluggy.PluginManager, distributions: dict[str, tuple[str, str]]):
        self.manager = manager
        self._distributions = distributions
        self.runtimes: dict[str, type[Runtime]] = {}
        self._runtime_plugin: dict[str, str] = {}
        # Each implementation is called on its own so that a runtime can be traced to its plugin.
        for impl in manager.hook.scorer_register_runtimes.get_hookimpls():
            plugin_name = impl.plugin_name
            for runtime in _call_named(plugin_name, impl.function):
                if not (isinstance(runtime, type) and issubclass(runtime, Runtime)):
                    raise PluginLoadError(
                        f'Plugin "{plugin_name}" registered {runtime!r}, which is not a Runtime subclass',
                        plugin=plugin_name,
                    )
                other = self._runtime_plugin.get(runtime.name)
                if other is not None:
                    raise PluginLoadError(
                        f"Runtime '{runtime.name}' is registered by both plugin \"{other}\" and "
                        f'plugin "{plugin_name}"; disable one with SCORER_DISABLE_PLUGINS',
                        plugin=plugin_name,
                    )
                self.runtimes[runtime.name] = runtime
                self._runtime_plugin[runtime.name] = plugin_name

    def runtime_to_load(self, path: Path, name: str | None) -> type[Runtime]:
        """The runtime class to load ``path`` with: selected, then wrapped by every plugin."""
        return self.wrap_runtime(self.select_runtime(path, name))

    def wrap_runtime(self, runtime: type[Runtime]) -> type[Runtime]:
        """``runtime`` as every ``scorer_wrap_runtime`` implementation wraps it, each in turn."""
        for impl in self.manager.hook.scorer_wrap_runtime.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise PluginLoadError(
                    f'Plugin "{impl.plugin_name}" implements scorer_wrap_runtime as a wrapper; '
                    "return a subclass from a plain implementation instead",
                    plugin=impl.plugin_name,
                )
            # Called one by one, each on the previous result, with the arguments it asks for.
            wrapped = impl.function(**{name: runtime for name in impl.argnames})
            if wrapped is None:
                continue
            if not (isinstance(wrapped, type) and issubclass(wrapped, runtime)):
                raise PluginLoadError(
                    f"Plugin \"{impl.plugin_name}\" wrapped runtime '{runtime.name}' in {wrapped!r}, "
                    "which is not a subclass of it",
                    plugin=impl.plugin_name,
                )
            runtime = wrapped
        return runtime

    def demo_models(self) -> dict[str, DemoModel]:
        models: dict[str, DemoModel] = {}
        for batch in self.manager.hook.scorer_register_demo_models():
            for demo in batch:
                models[demo.name] = demo
        return models

    def configured_model(self) -> ConfiguredModel | None:
        """The one model that plugins' own settings name, or None; several is a configuration error."""
        found = [model for batch in self.manager.hook.scorer_configured_models() for model in batch]
        if len(found) > 1:
            sources = "; ".join(f"{m.source} names '{m.path}' ({m.runtime})" for m in found)
            raise ConfigurationError(f"More than one model is configured: {sources}. Set only one")
        return found[0] if found else None

    def resolve_model_uri(self, uri: str, directory: Path) -> Path | None:
        """The local path a plugin fetched the model ``uri`` names to (into ``directory``), or None
        when no plugin knows it; two plugins answering is a configuration error."""
        found: list[tuple[str, Path]] = []
        arguments: dict[str, Any] = {"uri": uri, "directory": directory}
        for impl in self.manager.hook.scorer_resolve_model_uri.get_hookimpls():
            # Called one by one, so that an answer names its plugin.
            local = impl.function(**{name: arguments[name] for name in impl.argnames})
            if local is None:
                continue
            if not isinstance(local, str | os.PathLike):
                raise PluginLoadError(
                    f"Plugin \"{impl.plugin_name}\" resolved '{uri}' to {local!r}, which is not a path",
                    plugin=impl.plugin_name,
                )
            found.append((impl.plugin_name, Path(local)))
        if len(found) > 1:
            plugins = " and ".join(f'"{name}"' for name, _ in found)
            raise ConfigurationError(
                f"Model path '{uri}' is resolved by plugins {plugins}; "
                "disable one with SCORER_DISABLE_PLUGINS"
            )
        return found[0][1] if found else None

    def select_runtime(self, path: Path | None, name: str | None) -> type[Runtime]:
        """The runtime named, or else the one whose ``can_load`` claims ``path``.

        Among several claimants the highest ``detection_priority`` wins; a tie is ambiguous.
        """
        available = ", ".join(sorted(self.runtimes)) or "none"
        if name:
            try:
                return self.runtimes[name]
            except KeyError:
                raise NoRuntimeFound(
                    f"No installed runtime is named '{name}'; installed runtimes: {available}"
                ) from None
        if path is None:
            raise NoRuntimeFound("No model path given, so no runtime can be detected; pass --runtime")
        candidates = [r for r in self.runtimes.values() if _claims(r, path)]
        if not candidates:
            raise NoRuntimeFound(
                f"No installed runtime can load '{path}'; installed runtimes: {available}. "
                "Install the plugin for this model type or pass --runtime"
            )
        top = max(r.detection_priority for r in candidates)
        candidates = [r for r in candidates if r.detection_priority == top]
        if len(candidates) > 1:
            names = sorted(r.name for r in candidates)
            raise AmbiguousRuntime(
                f"'{path.name}' can be loaded by {' and '.join(repr(n) for n in names)}; pass --runtime",
                candidates=names,
            )
        return candidates[0]

    def describe(self) -> list[PluginInfo]:
        infos = []
        for plugin_name, plugin in sorted(self.manager.list_name_plugin(), key=lambda item: item[0]):
            if plugin is hookspecs:
                continue
            distribution, version = self._distributions.get(plugin_name, (None, None))
            hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or ())
            runtimes = sorted(r for r, p in self._runtime_plugin.items() if p == plugin_name)
            infos.append(PluginInfo(plugin_name, distribution, version, hooks, runtimes))
        return infos


def _claims(runtime: type[Runtime], path: Path) -> bool:
    try:
        return bool(runtime.can_load(path))
    except Exception:  # can_load must not raise; a buggy one must not stop detection
        log.exception("Runtime '%s' raised in can_load(%s); treating it as 'no'", runtime.name, path)
        return False


def _call_named(plugin_name: str, impl: Any) -> list[Any]:
    try:
        return list(impl() or [])
    except Exception as exc:
        raise PluginLoadError(
            f'Error in plugin "{plugin_name}" while registering runtimes: {type(exc).__name__}: {exc}',
            plugin=plugin_name,
        ) from exc


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def load_plugins(settings: Settings, *, entry_points: bool = True) -> Plugins:
    """Load every installed plugin (minus blocked ones) and any ``SCORER_EXTRA_PLUGINS`` modules."""
    manager = pluggy.PluginManager("scorer_core")
    manager.add_hookspecs(hookspecs)
    blocked = set(_split(settings.disable_plugins))
    allowed = set(_split(settings.load_plugins))
    for name in blocked:
        manager.set_blocked(name)
    distributions: dict[str, tuple[str, str]] = {}
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or (allowed and ep.name not in allowed):
                continue
            if manager.get_plugin(ep.name) is not None:
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else None
            module = _load_entry_point(ep, dist)
            _register(manager, module, ep.name)
            if dist is not None:
                distributions[ep.name] = dist
    for module_name in _split(settings.extra_plugins):
        if module_name in blocked or manager.get_plugin(module_name) is not None:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(
                f'Error loading plugin "{module_name}" (from SCORER_EXTRA_PLUGINS): '
                f"{type(exc).__name__}: {exc}",
                plugin=module_name,
            ) from exc
        if manager.is_registered(module):
            # Installed and also named for development: one registration, or every hook runs twice.
            log.info(
                "SCORER_EXTRA_PLUGINS names '%s', already registered as plugin \"%s\"; loading it once",
                module_name,
                manager.get_name(module),
            )
            continue
        _register(manager, module, module_name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(str(exc), plugin=getattr(exc.plugin, "__name__", "?")) from exc
    if settings.trace_plugins:
        manager.trace.root.setwriter(lambda message: log.info("plugin trace: %s", message.rstrip()))
        manager.enable_tracing()
    return Plugins(manager, distributions)


def _register(manager: pluggy.PluginManager, module: ModuleType, name: str) -> None:
    """Register a plugin module; a hook implementation whose arguments the spec lacks names it."""
    try:
        manager.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f'Plugin "{name}" cannot be registered: {exc}', plugin=name) from None


def _load_entry_point(ep: importlib.metadata.EntryPoint, dist: tuple[str, str] | None) -> ModuleType:
    where = f" ({dist[0]} {dist[1]})" if dist else ""
    try:
        module = ep.load()
    except Exception as exc:
        raise PluginLoadError(
            f'Error loading plugin "{ep.name}"{where}: {type(exc).__name__}: {exc}', plugin=ep.name
        ) from exc
    if not isinstance(module, ModuleType):
        raise ConfigurationError(
            f'Entry point "{ep.name}"{where} in group {ENTRY_POINT_GROUP} must name a module, got {module!r}'
        )
    return module
