"""``WorkerPool`` driven directly, as an embedder would: real worker processes, no HTTP server."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scorer_core.config.settings import Settings
from scorer_core.execution.workers.pool import WorkerPool
from tests.conftest import INSTALLED_PLUGINS, plugin_env, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def start_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., WorkerPool]]:
    """Start a pool of probe-model workers under ``Settings`` built in code; shut down after."""
    # Only what lets the worker import the probe plugin comes from the environment.
    monkeypatch.setenv("PYTHONPATH", plugin_env()["PYTHONPATH"])
    pools: list[WorkerPool] = []

    def start(model: Path, count: int = 1, **settings: object) -> WorkerPool:
        code = Settings(extra_plugins="probe_plugin", disable_plugins=INSTALLED_PLUGINS, **settings)
        pool = WorkerPool(code, model, "probe-scorer", count)
        pools.append(pool)
        pool.start()
        return pool

    yield start
    for pool in pools:
        pool._shutdown()


def test_a_worker_loads_the_model_under_the_settings_the_server_was_given_in_code(
    start_pool: Callable[..., WorkerPool], probe_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment says otherwise, and the worker inherits it: the settings passed in code win,
    because the worker receives them instead of reading the environment again."""
    monkeypatch.setenv("MODEL_ID", "from-the-environment")
    monkeypatch.setenv("SCORER_EXTRA_PLUGINS", "no_such_plugin")
    monkeypatch.setenv("SHAPLEY_ENABLE", "true")
    pool = start_pool(probe_file(contributions=["ORIGINAL"]), model_id="from-code", shapley_enable="false")
    assert pool.facts.model_id == "from-code"
    assert pool.facts.shapley.enabled == frozenset()

