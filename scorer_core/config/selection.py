"""Which model to serve and with which runtime: the command line, ``MODEL_PATH``, a plugin's own
variable (``SCORER_MOJO_PATH``), or else the demo model, built once."""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from scorer_core.config.plugins import Plugins
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError

__all__ = ["build_demo", "remove_fetched_models", "resolve_model"]

log = logging.getLogger(__name__)
_DEMO_MARKER = ".scorer-demo-path"
#: A URI's scheme, as plugins fetch them: two characters at least, so that ``C:`` stays a drive.
_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
#: The directories plugins fetched models into, each with the process that made it.
_fetch_directories: list[tuple[Path, int]] = []


def build_demo(settings: Settings, plugins: Plugins) -> tuple[Path, str]:
    """Build (once) and return the demo model named by ``SCORER_DEMO_MODEL``, with its runtime."""
    demos = plugins.demo_models()
    demo = demos.get(settings.demo_model)
    if demo is None:
        available = ", ".join(sorted(demos)) or "none (install scorer-mlflow for the iris demo)"
        raise ConfigurationError(
            f"No model path given and no demo model named '{settings.demo_model}'; "
            f"available demo models: {available}. Pass a model path or set MODEL_PATH"
        )
    target = settings.demo_dir / demo.name
    marker = target / _DEMO_MARKER
    if not marker.is_file():
        log.info("Building the '%s' demo model under %s (once): %s", demo.name, target, demo.description)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{demo.name}-", dir=target.parent))
        try:
            built = demo.build(staging)
            relative = built.relative_to(staging)
            (staging / _DEMO_MARKER).write_text(str(relative))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / marker.read_text().strip(), demo.runtime


def resolve_model(settings: Settings, plugins: Plugins) -> tuple[Path, str]:
    """The model path to serve and the runtime to load it with; errors say how to fix them."""
    source = "Model path"
    runtime: str | None
    if settings.model_path is None:
        configured = plugins.configured_model()
        if configured is None:
            path, runtime_name = build_demo(settings, plugins)
            return path, settings.runtime or runtime_name
        given, source = str(configured.path), configured.source
        runtime = settings.runtime or configured.runtime
    else:
        given, runtime = settings.model_path, settings.runtime
    path = Path(given).expanduser()
    if not path.exists():
        path = _fetched(given, path, source, plugins)
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"{source} '{path}' is not readable by this user")
    return path, plugins.select_runtime(path, runtime).name


def _fetched(uri: str, path: Path, source: str, plugins: Plugins) -> Path:
    """The local copy a plugin fetched of the model a URI names (``models:/iris@champion``).
    ``uri`` is the text as given, which plugins receive: ``path``, made of it, has lost the second
    slash of ``s3://bucket/key``."""
    scheme = _URI_SCHEME.match(uri)
    if scheme is None:
        raise ConfigurationError(f"{source} '{path}' does not exist")
    directory = _fetch_directory()
    try:
        local = plugins.resolve_model_uri(uri, directory)
        if local is None:
            raise ConfigurationError(
                f"{source} '{uri}' does not exist, and no installed plugin fetches '{scheme.group(1)}:' "
                "URIs (scorer-mlflow fetches models:/ and runs:/ from MLflow)"
            )
    except BaseException:
        _remove((directory, os.getpid()))
        raise
    if not local.exists():
        raise ConfigurationError(f"{source} '{uri}' was fetched to '{local}', which does not exist")
    log.info("%s '%s' fetched to '%s'", source, uri, local)
    return local


def _fetch_directory() -> Path:
    """An empty directory for a plugin to fetch a model into, removed at exit by this process."""
    if not _fetch_directories:
        atexit.register(remove_fetched_models)
    directory = Path(tempfile.mkdtemp(prefix="scorer-fetched-"))
    _fetch_directories.append((directory, os.getpid()))
    return directory


def remove_fetched_models() -> None:
    """Remove the directories plugins fetched models into, at exit: ``atexit`` calls it, and so
    must any exit that skips ``atexit`` (``os._exit``), or each stop leaves a full copy behind,
    and a crash-looping container fills its ``/tmp``."""
    while _fetch_directories:
        _remove(_fetch_directories[-1])


def _remove(fetched: tuple[Path, int]) -> None:
    if fetched in _fetch_directories:
        _fetch_directories.remove(fetched)
    directory, owner = fetched
    if os.getpid() == owner:  # a forked child inherits the list, not the directory
        shutil.rmtree(directory, ignore_errors=True)
