"""What this environment lacks of what a model was saved with: warned once, when it loads.

MLflow warns of the same two things when ``mlflow.pyfunc.load_model`` is not told to
``suppress_warnings``, but its check of the requirements first maps every module installed to
its distribution by reading each installed distribution's file list: 0.3 s of CPU (about 200
distributions in this project's test venv) in each process that loads a model, so in each
server, each worker process, each forked replacement and each ``scorer batch``. The installed
distributions' versions answer the question alone. The runtime loads with MLflow's warnings
suppressed and calls ``warn_of_mismatches`` instead.

What differs from MLflow's check: a requirement on a distribution installed without metadata
(none that pip installs) is reported as not installed, where MLflow would import a module named
like it and read its ``__version__``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

__all__ = ["python_mismatch", "requirement_mismatches", "warn_of_mismatches"]

log = logging.getLogger(__name__)

#: The file MLflow writes the model's pip requirements to, beside MLmodel.
REQUIREMENTS_FILE = "requirements.txt"


def requirement_mismatches(model_dir: Path) -> list[str]:
    """Each of the model's pip requirements this environment does not satisfy, as
    ``name (installed: X, required: line)``, in the file's order. Lines that name no
    distribution (options, paths, URLs) and those whose markers exclude this environment are
    skipped, as MLflow skips them."""
    try:
        lines = (model_dir / REQUIREMENTS_FILE).read_text().splitlines()
    except OSError:  # none saved: nothing to compare
        return []
    found = []
    for line in lines:
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.url or (requirement.marker is not None and not requirement.marker.evaluate()):
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            found.append(f"{requirement.name} (installed: none, required: {text})")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            found.append(f"{requirement.name} (installed: {installed}, required: {text})")
    return found


def python_mismatch(mlmodel: Mapping[str, Any]) -> str | None:
    """Why the Python a model was saved with may not load or score it the same here, or None:
    a different major or minor version, or none recorded."""
    flavor = (mlmodel.get("flavors") or {}).get("python_function") or {}
    saved = flavor.get("python_version")
    running = ".".join(map(str, sys.version_info[:3]))
    if saved is None:
        return f"the model does not record the Python it was saved with; this is Python {running}"
    try:
        major_minor = Version(str(saved)).release[:2]
    except InvalidVersion:
        return f"the model records Python {saved!r}, which is no version; this is Python {running}"
    if major_minor != sys.version_info[:2]:
        return f"the model was saved with Python {saved}; this is Python {running}"
    return None


def warn_of_mismatches(model_dir: Path, mlmodel: Mapping[str, Any]) -> None:
    """Log one warning naming whatever ``requirement_mismatches`` and ``python_mismatch`` find
    for the model in ``model_dir``: it may fail or score differently here, and the log is where
    whoever deployed it looks."""
    problems = requirement_mismatches(model_dir)
    python = python_mismatch(mlmodel)
    if python is not None:
        problems.append(python)
    if problems:
        log.warning(
            "The model at '%s' was saved in another environment; it may fail or score differently "
            "here: %s. `mlflow.pyfunc.get_model_dependencies` gives its requirements.",
            model_dir,
            "; ".join(problems),
        )
