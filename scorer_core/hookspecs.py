"""Every hook a scorer_core plugin can implement, each with its contract.

Plugins write ``from scorer_core import hookimpl`` and register their module under the
entry-point group ``scorer_core.plugins``. Hooks are always called with keyword arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from pathlib import Path

    from scorer_core.configured import ConfiguredModel
    from scorer_core.demo import DemoModel
    from scorer_core.runtime import Runtime

__all__ = [
    "hookimpl",
    "hookspec",
    "scorer_configured_models",
    "scorer_register_demo_models",
    "scorer_register_runtimes",
    "scorer_resolve_model_uri",
    "scorer_wrap_runtime",
]

hookspec = HookspecMarker("scorer_core")
hookimpl = HookimplMarker("scorer_core")


@hookspec
def scorer_register_runtimes() -> list[type[Runtime]]:
    """Return the ``Runtime`` classes this plugin provides.

    Called once when the plugin manager starts. Every runtime's ``name`` must be unique across
    installed plugins. Results of all plugins are collected.

    :returns: a list of ``Runtime`` subclasses (may be empty).
    """
    raise NotImplementedError


@hookspec
def scorer_register_demo_models() -> list[DemoModel]:
    """Return demo models this plugin can build, for ``scorer serve`` with no model path.

    Called when a demo model is needed. A demo model is built locally from data shipped inside an
    installed package, never downloaded. Results of all plugins are collected; the core serves
    the one named by ``SCORER_DEMO_MODEL`` (default ``iris``).

    :returns: a list of ``DemoModel`` (may be empty).
    """
    raise NotImplementedError


@hookspec
def scorer_configured_models() -> list[ConfiguredModel]:
    """Return the model named by this plugin's own configuration, if any (``SCORER_MOJO_PATH``).

    Called only when neither the command line nor ``MODEL_PATH`` names a model, before falling
    back to a demo model. Read environment variables here, never the file system beyond that.
    More than one configured model across plugins stops start-up, naming every source.

    :returns: a list of ``ConfiguredModel`` (usually empty or one).
    """
    raise NotImplementedError


@hookspec
def scorer_resolve_model_uri(uri: str, directory: Path) -> Path | None:
    """Return a local file or directory holding the model ``uri`` names, or ``None`` when this
    plugin does not know the URI's scheme.

    A model path is not always on this machine: MLflow names models ``models:/NAME/VERSION``,
    ``models:/NAME@ALIAS`` or ``runs:/RUN_ID/PATH``. The core calls this hook, in the server
    process at start-up and before anything listens, for a model path that does not exist locally
    and starts with a URI scheme (two or more characters, then a colon); the runtime is then chosen
    for the returned path as for any other. Fetch the model here (downloads are start-up's to wait
    for), and raise ``ConfigurationError`` with one line naming the URI and the cause when it is
    this plugin's URI but cannot be fetched (an unreachable server, an unknown model). Fetch into
    ``directory``: the core made it, empty, for this URI, and removes it when the process ends,
    short of being killed (an exit past threads a model left running skips ``atexit``, so a plugin's own
    clean-up there would leave a full copy behind on most stops). The returned path must last as
    long as this process, worker processes load from it too. Two plugins resolving one URI stop
    start-up, naming both.

    :param uri: the model path as given on the command line or in ``MODEL_PATH``, character for
        character (``s3://bucket/key`` keeps its two slashes); a plugin's configured model's
        ``path`` as ``str`` gives it.
    :param directory: an empty directory for the fetched copy, removed by the core at exit.
    :returns: a local path, or ``None``.
    """
    raise NotImplementedError


@hookspec
def scorer_wrap_runtime(runtime: type[Runtime]) -> type[Runtime] | None:
    """Return a subclass of ``runtime`` to load the model with instead, or ``None`` to leave it.

    Called in the server process once the runtime is chosen, and again in each worker process
    before it loads the model (``BATCH_WORKERS``), so a wrapper applies wherever the model runs.
    Every implementation is applied in turn, in registration order, each to the previous one's
    result; wrapper implementations (``hookwrapper``/``wrapper``) are refused. The conformance
    suite records the headers model calls see this way; tools that measure or trace model calls
    can do the same.

    :param runtime: the selected ``Runtime`` subclass (possibly wrapped already).
    :returns: a subclass of ``runtime``, or ``None``.
    """
    raise NotImplementedError
