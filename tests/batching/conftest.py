from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from scorer_core.frame import Frame
from scorer_core.headers import ForwardedHeaders
from scorer_core.model import load_model
from scorer_core.scoring import ScoringTask
from scorer_core.settings import load_settings
from tests.conftest import PLUGINS_DIR


@pytest.fixture
def probe_model(tmp_path, monkeypatch):
    """A ServedModel of the probe runtime, loaded in this process."""
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    sys.modules.pop("probe_plugin", None)
    from probe_plugin import ProbeRuntime

    def load(**spec):
        path = tmp_path / "m.probe"
        path.write_text(json.dumps(spec))
        return load_model(ProbeRuntime, path, load_settings())

    return load


def task(xs, auth=None, **options):
    headers = ForwardedHeaders({"Authorization": auth} if auth is not None else {})
    return ScoringTask(Frame({"x": np.asarray(xs, dtype=float)}, len(xs)), headers, **options)
