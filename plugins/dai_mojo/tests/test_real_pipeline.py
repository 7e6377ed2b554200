"""Opt-in: the real daimojo package on a real Driverless AI pipeline, with a real licence.

    DAI_MOJO_TEST_PIPELINE=/path/to/mojo-pipeline DRIVERLESS_AI_LICENSE_KEY=... \\
        .venv/bin/python -m pytest plugins/dai_mojo/tests/test_real_pipeline.py

It runs the whole conformance suite (``scorer check``) against a server that imports the installed
daimojo, not the double. Without both variables it is skipped, and says so in the test summary.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import DOUBLE

# Read at import, before the suite's autouse fixture swaps in the double's licence.
PIPELINE = os.environ.get("DAI_MOJO_TEST_PIPELINE", "")
REAL_LICENCE = {k: v for k, v in os.environ.items() if k.startswith("DRIVERLESS_AI_LICENSE")}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PIPELINE and REAL_LICENCE),
        reason="real DAI pipeline test: set DAI_MOJO_TEST_PIPELINE and DRIVERLESS_AI_LICENSE_KEY (or _FILE)",
    ),
]


def real_env() -> dict[str, str]:
    """This process's environment without the double on the path and with the real licence."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERLESS_AI_LICENSE")}
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(DOUBLE)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # Shapley is off by default, as in H2O's scorer: on here, so the suite checks contributions.
    return {**env, **REAL_LICENCE, "SCORER_LOAD_PLUGINS": "dai_mojo", "SHAPLEY_ENABLE": "true"}


def test_the_server_imports_the_real_daimojo():
    probe = subprocess.run(
        [sys.executable, "-c", "import daimojo; print(daimojo.__file__)"],
        env=real_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(DOUBLE) not in probe.stdout


def test_a_real_pipeline_passes_the_conformance_suite():
    result = subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "check", PIPELINE],
        env=real_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
