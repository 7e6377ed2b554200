"""SCORER_MODEL_LIBRARY_THREADS over real HTTP: the native pools (OpenMP, as gradient-boosting
models load it, and numpy's BLAS) as a model call sees them, in the server process and in a
worker process: the executor's share of the CPUs by default; 0 leaves the libraries' own
defaults. (``execution.threads``'s own tests cover CPU quotas.)"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from conformance.target import start_server
from tests.conftest import plugin_env

pytestmark = pytest.mark.slow

SPEC = {"load_openmp": True, "outputs": [["y", "Float64"], ["library_threads", "Str"]]}


def pools_seen(probe_file, **env: str) -> dict[str, set[int]]:
    with start_server(probe_file(**SPEC), env=plugin_env(**env), record_headers=False) as target:
        reply = httpx.post(f"{target.base_url}/model/score", json={"fields": ["x"], "rows": [["1"]]}, timeout=60)
    assert reply.status_code == 200, reply.text
    return parsed(reply.json()["score"][0][1])


def parsed(pools: str) -> dict[str, set[int]]:
    """``openmp=2 openblas=1 ...`` as each library's thread counts."""
    seen: dict[str, set[int]] = {}
    for pool in pools.split():
        name, threads = pool.split("=")
        seen.setdefault(name, set()).add(int(threads))
    return seen


def libraries_own_defaults() -> dict[str, set[int]]:
    code = (
        "import sklearn.ensemble\n"
        "from threadpoolctl import threadpool_info\n"
        "print(' '.join(f\"{i['internal_api']}={i['num_threads']}\" for i in threadpool_info()))"
    )
    return parsed(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize(("workers", "share"), [("0", 1), ("1", 2)])
def test_by_default_a_model_call_gets_its_executors_share_of_the_cpus(probe_file, workers, share):
    # In the server process, every CPU the process may use; in each of n workers, 1/(n + 1).
    cpus = len(os.sched_getaffinity(0))
    seen = pools_seen(probe_file, BATCH_WORKERS=workers)
    assert {"openmp", "openblas"} <= set(seen), seen
    assert all(threads == {max(1, cpus // share)} for threads in seen.values()), (cpus, seen)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_the_setting_chooses_the_number_and_0_leaves_the_libraries_defaults(probe_file, workers):
    assert all(t == {2} for t in pools_seen(probe_file, BATCH_WORKERS=workers, SCORER_MODEL_LIBRARY_THREADS="2").values())
    own = libraries_own_defaults()
    assert pools_seen(probe_file, BATCH_WORKERS=workers, SCORER_MODEL_LIBRARY_THREADS="0") == own
