"""A plugin fetching models a URI names, as a registry plugin does (``scorer-mlflow``'s
``models:/``): ``store:NAME`` and ``s3://BUCKET/NAME`` are copies of the file ``NAME`` from the
directory ``STORE_PLUGIN_SOURCE`` names, made into the directory the core gives the hook.

An unknown ``NAME`` is a ``ConfigurationError`` that quotes the URI exactly as the hook received
it, so that tests see what the core passed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from scorer_core import ConfigurationError, hookimpl

SCHEMES = ("store:", "s3://")


@hookimpl
def scorer_resolve_model_uri(uri: str, directory: Path) -> Path | None:
    scheme = next((s for s in SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        return None
    name = uri.removeprefix(scheme).rpartition("/")[2]
    source = Path(os.environ.get("STORE_PLUGIN_SOURCE", "/nonexistent")) / name
    if not name or not source.is_file():
        raise ConfigurationError(f"Cannot fetch {uri!r}: no such model in the store")
    local = directory / "model" / name  # a copy in a folder of its own, as MLflow's client makes
    local.parent.mkdir()
    shutil.copyfile(source, local)
    return local
