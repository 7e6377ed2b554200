from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.execution.executors import InProcessExecutor, load_runtime
from scorer_core.execution.scoring import ScoringTask
from scorer_core.frame import Frame
from scorer_core.headers import ForwardedHeaders
from tests.conftest import PLUGINS_DIR


@pytest.fixture
def probe_model(tmp_path, monkeypatch):
    """A loaded probe runtime (a ``Runtime``), in this process."""
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    sys.modules.pop("probe_plugin", None)
    from probe_plugin import ProbeRuntime

    def load(**spec):
        path = tmp_path / "m.probe"
        path.write_text(json.dumps(spec))
        runtime = load_runtime(ProbeRuntime, path, load_settings())[0]
        runtime.path = path  # for in_process()
        return runtime

    return load


def task(xs, auth=None, **options):
    headers = ForwardedHeaders({"Authorization": auth} if auth is not None else {})
    return ScoringTask(Frame({"x": np.asarray(xs, dtype=float)}, len(xs)), headers, **options)


def in_process(runtime, threads):
    """An in-process executor for a loaded runtime, as the server builds one."""
    from scorer_core.execution.facts import ModelFacts

    return InProcessExecutor(runtime, ModelFacts.of(runtime, runtime.path, load_settings()), threads)
