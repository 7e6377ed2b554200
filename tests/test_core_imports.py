"""The core must never import a model framework: a runtime image installs only what it serves."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "mlflow", "jpype", "h2o", "daimojo", "pandas", "sklearn", "datatable"]


def test_core_app_and_cli_import_no_model_framework():
    code = (
        "import json, sys\n"
        "import scorer_core.server.app, scorer_core.cli, scorer_core.config.plugins, conformance, h2o_scorer_core.context\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
