"""The conformance suite as a plugin author uses it: subclass RuntimeSuite in their own tests."""

from __future__ import annotations

import json

import pytest

from tests.conftest import plugin_env

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow

SUITE_TEMPLATE = """
import conformance

class TestProbe(conformance.RuntimeSuite):
    scorer_target = conformance.served({model!r}, env={env!r})
"""


def run_suite(pytester: pytest.Pytester, tmp_path, spec: dict) -> pytest.RunResult:
    model = tmp_path / "model.probe"
    model.write_text(json.dumps(spec))
    pytester.makepyfile(test_probe=SUITE_TEMPLATE.format(model=str(model), env=plugin_env()))
    # As a plugin's own suite would, with pytest's deprecations as errors (a class-scoped fixture
    # must be a class method, or pytest 10 refuses it).
    return pytester.runpytest("-p", "no:cacheprovider", "-q", "-W", "error::pytest.PytestDeprecationWarning")


def suite_checks() -> int:
    """How many checks RuntimeSuite holds: its test methods, each parametrized case counted."""
    import conformance

    count = 0
    for name in dir(conformance.RuntimeSuite):
        if name.startswith("test_"):
            marks = getattr(getattr(conformance.RuntimeSuite, name), "pytestmark", [])
            cases = [len(m.args[1]) for m in marks if m.name == "parametrize"]
            count += cases[0] if cases else 1
    return count


def test_conforming_runtime_passes_every_check(pytester, tmp_path):
    checks = suite_checks()
    assert checks >= 35, "the suite lost its checks"
    result = run_suite(pytester, tmp_path, {})
    result.assert_outcomes(passed=checks)  # every check ran and passed: none skipped, none missed


def test_runtime_that_drops_a_row_fails_with_the_row_count_message(pytester, tmp_path):
    result = run_suite(pytester, tmp_path, {"behaviour": "drop_row"})
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 5
    result.stdout.fnmatch_lines(["*Runtime 'probe-scorer' returned 6 rows for a request of 7 rows*"])


def test_suite_is_inert_without_a_target(pytester):
    pytester.makepyfile(
        test_nothing="from conformance.checks import ContractChecks\nclass TestX(ContractChecks):\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-rs")
    result.assert_outcomes(skipped=9)
    result.stdout.fnmatch_lines(["*no conformance target: pass --scorer-model PATH or --scorer-url URL*"])


def test_cells_holding_json_are_compared_as_json_within_the_tolerance():
    from conformance.checks import cells_match

    a = [['{"predictions": [0.30000001, 0.7], "labels": ["a", "b"]}']]
    b = [['{"labels": ["a", "b"], "predictions": [0.3, 0.7]}']]
    assert cells_match(a, b, rel=1e-6)
    assert not cells_match(a, b, rel=1e-9)
    assert not cells_match(a, [['{"predictions": [0.3, 0.7], "labels": ["a", "c"]}']], rel=1e-6)
    assert not cells_match([["{not json"]], [["{not json}"]])
