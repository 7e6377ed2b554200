"""pytest11 plugin: ``--scorer-model PATH`` / ``--scorer-url URL`` and the ``scorer_target`` fixture.

Installed with scorer-core, it stays inert (adds options, nothing else) until a run asks for it:
``pytest --pyargs conformance.suite --scorer-model MODEL`` or ``scorer check MODEL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conformance.shapes import score_output_names
from conformance.target import ScorerTarget, start_server


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scorer-conformance", "scorer_core conformance suite")
    group.addoption("--scorer-model", metavar="PATH", help="start a scorer serving this model and check it")
    group.addoption("--scorer-runtime", metavar="NAME", help="runtime for --scorer-model (default: detected)")
    group.addoption("--scorer-url", metavar="URL", help="check an already running scorer at this base URL")
    group.addoption(
        "--oip-model-name",
        metavar="NAME",
        default="model-under-check",
        help="the model's name in the Open Inference Protocol's paths (a --scorer-model is served under it)",
    )
    group.addoption(
        "--oip-texts",
        metavar="JSON",
        help='for the Open Inference Protocol checks: a valid text per BYTES input, {"city": "Oslo"}',
    )
    group.addoption(
        "--scorer-rel-tol",
        metavar="REL",
        type=float,
        default=1e-9,
        help="relative tolerance for numbers that must agree across batch sizes (float32 models: 1e-6)",
    )


@pytest.fixture(scope="session")
def scorer_target(request: pytest.FixtureRequest) -> Iterator[ScorerTarget]:
    """The server under test, from ``--scorer-url`` or started from ``--scorer-model``."""
    url = request.config.getoption("--scorer-url")
    model = request.config.getoption("--scorer-model")
    if url:
        yield ScorerTarget(url)
    elif model:
        with start_server(model, runtime=request.config.getoption("--scorer-runtime")) as target:
            yield target
    else:
        pytest.skip("no conformance target: pass --scorer-model PATH or --scorer-url URL")


@pytest.fixture(scope="session")
def oip_model_name(request: pytest.FixtureRequest) -> str:
    """The model's name in the Open Inference Protocol's paths (``--oip-model-name``)."""
    return str(request.config.getoption("--oip-model-name"))


@pytest.fixture(scope="session")
def oip_target(request: pytest.FixtureRequest, oip_model_name: str) -> Iterator[ScorerTarget]:
    """The Open Inference Protocol server under test: ``--scorer-url`` (any OIP server), or ours
    started from ``--scorer-model`` with the model under ``--oip-model-name``."""
    url = request.config.getoption("--scorer-url")
    model = request.config.getoption("--scorer-model")
    if url:
        yield ScorerTarget(url)
    elif model:
        runtime = request.config.getoption("--scorer-runtime")
        with start_server(model, runtime=runtime, env={"MODEL_NAME": oip_model_name}) as target:
            yield target
    else:
        pytest.skip("no conformance target: pass --scorer-model PATH or --scorer-url URL")


def _get_json(target: ScorerTarget, path: str) -> Any:
    reply = target.get(path)
    assert reply.status == 200, f"{path}: {reply}"
    return reply.json()


@pytest.fixture(scope="class")
def scorer_relative_tolerance(request: pytest.FixtureRequest) -> float:
    """How far numbers may differ when the same row is scored in batches of different sizes.

    1e-9 by default: float64 models differ only in the last bits. A suite for a float32 model
    (torch) overrides this fixture, or passes ``--scorer-rel-tol``.
    """
    return float(request.config.getoption("--scorer-rel-tol"))


@pytest.fixture(scope="class")
def scorer_schema(scorer_target: ScorerTarget) -> dict[str, Any]:
    """``GET /model/schema`` of the target."""
    return dict(_get_json(scorer_target, "/model/schema"))


@pytest.fixture(scope="class")
def scorer_sample(scorer_target: ScorerTarget) -> dict[str, Any]:
    """``GET /model/sample_request`` of the target: a request that must pass validation."""
    return dict(_get_json(scorer_target, "/model/sample_request"))


@pytest.fixture(scope="class")
def scorer_capabilities(scorer_target: ScorerTarget) -> list[str]:
    """``GET /model/capabilities`` of the target."""
    return list(_get_json(scorer_target, "/model/capabilities"))


@pytest.fixture(scope="class")
def scorer_input_names(scorer_schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in scorer_schema["schema"]["inputFields"]]


@pytest.fixture(scope="class")
def scorer_output_names(scorer_schema: dict[str, Any]) -> list[str]:
    """The output fields a score response carries: the schema's, less interval bounds it lists."""
    return score_output_names(scorer_schema)
