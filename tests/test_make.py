"""The README's first command (`make serve`) installs everything the README then tells users to run."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent


def recipe(target: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, flags=re.MULTILINE)
    assert match, f"no {target} target"
    return match.group(1)


def test_make_serve_installs_what_scorer_check_needs():
    assert "install" in re.search(r"^serve:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert "'.[conformance]'" in recipe("install")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("pytest") for requirement in extras["conformance"])
    assert "scorer check" in (ROOT / "README.md").read_text()
