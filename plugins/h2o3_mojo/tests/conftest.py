"""The committed MOJOs and H2O-3's own answers for them (regenerate with fixtures/build_mojos.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from scorer_h2o3_mojo.runtime import H2O3MojoRuntime

FIXTURES = Path(__file__).parent / "fixtures"
MOJOS = FIXTURES / "mojos"
MODEL_NAMES = sorted(p.stem for p in (FIXTURES / "expected").glob("*.json"))
TEST_FRAME: dict[str, Any] = json.loads((FIXTURES / "test_frame.json").read_text())


def expected(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "expected" / f"{name}.json").read_text())


@cache
def _loaded(name: str) -> H2O3MojoRuntime:
    runtime = H2O3MojoRuntime()
    runtime.load(MOJOS / f"{name}.zip")
    return runtime


@pytest.fixture(scope="session")
def load_mojo() -> Callable[[str], H2O3MojoRuntime]:
    """Each fixture MOJO loaded once per session, in this process's JVM."""
    return _loaded
