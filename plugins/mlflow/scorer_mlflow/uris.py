"""``models:/`` and ``runs:/`` model paths, fetched from the MLflow tracking server at start-up.

``scorer serve models:/iris@champion`` serves what the registry names now: MLflow's own client
(``mlflow.artifacts.download_artifacts``) resolves the name, version or alias against
``MLFLOW_TRACKING_URI`` and downloads the model, before the server listens, into the directory
the core gives the hook, which the core removes when the process exits. Anything that stops it
(no tracking URI, an unreachable server, an unknown model, version, alias or run) is one line
naming the URI and the server, and start-up ends there.

MLflow retries a failed request 7 times with a doubling backoff, about four minutes against a
server that refuses connections; unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` or
``MLFLOW_HTTP_REQUEST_TIMEOUT`` are set, the fetch retries twice and waits 30 s for an answer.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scorer_core import ConfigurationError

__all__ = ["FETCH_DEFAULTS", "URI_SCHEMES", "fetch_model"]

#: The schemes MLflow's client resolves through the tracking server and its model registry.
URI_SCHEMES = ("models", "runs")
#: MLflow's HTTP settings for the start-up fetch, where the operator has not set them.
FETCH_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_TRACKING_URI = "MLFLOW_TRACKING_URI"


def fetch_model(uri: str, target: Path) -> Path | None:
    """The local copy, under the empty directory ``target``, of the model ``uri`` names, or None
    when it is not a ``models:`` or ``runs:`` URI; ``ConfigurationError`` in one line when it
    cannot be fetched. ``target`` is the caller's to remove (the core's, for the hook)."""
    scheme, colon, _ = uri.partition(":")
    if not colon or scheme not in URI_SCHEMES:
        return None
    tracking = os.environ.get(_TRACKING_URI, "").strip()
    if not tracking:
        raise ConfigurationError(
            f"'{uri}' names a model in an MLflow tracking server; set {_TRACKING_URI} to the server's "
            "address (for example http://mlflow.example:5000)"
        )
    import mlflow.artifacts

    try:
        with _fetch_defaults():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except Exception as exc:
        raise ConfigurationError(
            f"Cannot fetch '{uri}' from the MLflow tracking server {_without_credentials(tracking)} "
            f"({_TRACKING_URI}): {_reason(exc)}"
        ) from None
    return local


@contextmanager
def _fetch_defaults() -> Iterator[None]:
    """MLflow's HTTP settings bounded for the fetch (start-up is single-threaded), then restored,
    so that model code calling MLflow later sees the operator's own settings. urllib3's line per
    retry is held back too: the failure is reported once, in the error."""
    added = [name for name in FETCH_DEFAULTS if name not in os.environ]
    os.environ.update({name: FETCH_DEFAULTS[name] for name in added})
    retries = logging.getLogger("urllib3.connectionpool")
    level = retries.level
    retries.setLevel(logging.ERROR)
    try:
        yield
    finally:
        retries.setLevel(level)
        for name in added:
            os.environ.pop(name, None)


def _reason(exc: Exception) -> str:
    """MLflow's error in one line: the registry's own words (``RESOURCE_DOES_NOT_EXIST: ...``), or
    for a server that cannot be reached, why, without urllib3's nested retry report."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    if "API request to" in text:
        errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
        if errno:
            return f"cannot reach it: {errno.group(1).strip()}"
        if "timed out" in text.lower():
            return "cannot reach it: it did not answer in time"
    text = _without_credentials(text)
    return text if len(text) <= 500 else text[:497] + "..."


def _without_credentials(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL hidden, as a tracking URI may carry one."""
    return re.sub(r"//[^/@\s]+@", "//***@", text)
