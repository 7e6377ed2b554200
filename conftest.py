"""How ``make test`` shares the suite between pytest-xdist's workers (``--dist loadscope``).

Each test goes to the worker of its *group*, and a group runs on one worker from start to end, so
that a module- or class-scoped server starts once, not once per worker:

- by default a test's group is its module (its class, for methods), as xdist's ``loadscope``
  groups them;
- the modules in ``SHARED_GROUPS`` share a group: both Ray Serve modules start a local Ray
  cluster (and ``serve run`` listens on Serve's fixed port 8000), and two must never overlap.

The groups listed there are the suite's longest (a Spark session, Ray clusters), so they are sent
first: a long group picked up last would leave the other workers idle at the end.

xdist's own ``loadgroup`` (``xdist_group`` marks) would say this with marks, but xdist 3.8 names
a test's group by rewriting ``item._nodeid``, which pytest 9.2 no longer reads: every test became
a group of its own. This scheduler names groups from node ids, which both versions agree on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.forkserver import Forkserver
from conformance.target import servers_launched_by

#: Modules whose tests run on one worker, one module after the other, keyed by module path.
SHARED_GROUPS = {
    "tests/test_batch_spark.py": "spark-session",
    "integrations/ray/tests/test_ray_serve.py": "ray-cluster",
    "integrations/ray/tests/test_serve_cli.py": "ray-cluster",
}


#: What the suite's servers import before they read a model: the web stack, the libraries of the
#: MLflow models most tests serve, and scorer_core's server (no plugin: a test may disable one).
#: Each xdist worker's forkserver imports them once and forks every server that
#: ``conformance.start_server`` starts (about 2.3 CPU-seconds saved on each MLflow server, 0.5 on
#: each probe server). Tests that start ``scorer`` themselves still start it afresh.
SERVER_LIBRARIES = (
    "fastapi",
    "uvicorn",
    "uvicorn.protocols.http.httptools_impl",
    "uvloop",
    "pydantic_settings",
    "prometheus_client",
    "pluggy",
    "orjson",
    "numpy",
    "pandas",
    "pyarrow",
    "mlflow.pyfunc",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "scorer_core.server.app",
    "scorer_core.server.hosting",
)


@pytest.fixture(scope="session", autouse=True)
def servers_forked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Servers started through ``conformance.start_server`` are forked from a preloaded process,
    unless ``SCORER_TESTS_EXEC_SERVERS=1`` asks for a fresh interpreter each, as before.

    Not in a ``scorer check`` that tests run (its suite lies under this directory in an editable
    install, so this file is its conftest too): it starts one or two servers, and preloading the
    libraries took 2.1 to 2.4 s of processor time where starting each server afresh takes 0.8."""
    if os.environ.get("SCORER_TESTS_EXEC_SERVERS") == "1" or request.config.rootpath != Path(__file__).parent:
        yield
        return
    with Forkserver(SERVER_LIBRARIES) as forkserver, servers_launched_by(forkserver):
        yield


def module_of(nodeid: str) -> str:
    """A test's module path, from its node id."""
    return nodeid.split("::", 1)[0]


def group_of(nodeid: str) -> str:
    """A test's group: its module's shared group, else its module or class (loadscope's rule)."""
    return SHARED_GROUPS.get(module_of(nodeid)) or nodeid.split("[", 1)[0].rsplit("::", 1)[0]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadscope's scheduler, with ``group_of`` as its scope."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        # The one method xdist's own schedulers (loadfile, loadgroup) override to choose scopes;
        # tests/test_dependency_shapes.py fails by name if it goes away.
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def serial_strays(items: list[pytest.Item], listed: str) -> list[str]:
    """The modules with tests marked ``serial`` that ``listed`` (white-space separated paths)
    leaves out."""
    serial = {module_of(item.nodeid) for item in items if item.get_closest_marker("serial") is not None}
    return sorted(serial - set(listed.split()))


class UnlistedSerialTests(pytest.Item):
    """A test that fails, naming the modules with serial tests that ``make test`` would not run."""

    def __init__(self, *, strays: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strays = strays

    def runtest(self) -> None:
        pytest.fail(
            f"tests marked serial in {', '.join(self.strays)}, which the Makefile's SERIAL_MODULES does "
            "not list: make test would run them in neither phase. Add the module there.",
            pytrace=False,
        )

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "Makefile", None, "SERIAL_MODULES"


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the first phase must see its serial tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A failing test for ``serial`` tests outside ``make test``'s list; the shared groups first."""
    # make test's second phase collects only the Makefile's SERIAL_MODULES (passed here as
    # SCORER_SERIAL_MODULES): a serial test elsewhere would run in neither phase, so the first
    # phase, which collects everything, gets a failing test naming it (not an error raised here,
    # which xdist's workers turn into an INTERNALERROR that does not say why).
    listed = os.environ.get("SCORER_SERIAL_MODULES")
    strays = serial_strays(items, listed) if listed is not None else []
    if strays:
        unlisted = UnlistedSerialTests.from_parent(items[0].session, name="SERIAL_MODULES", strays=strays)
        items.insert(0, unlisted)
    # The shared groups first: loadscope hands out groups in collection order.
    if not hasattr(config, "workerinput"):  # xdist's documented mark of a worker process
        return
    first = {item.nodeid for item in items if module_of(item.nodeid) in SHARED_GROUPS}
    items.sort(key=lambda item: item.nodeid not in first)  # stable: each group keeps its order
