"""Collects every conformance check against the target given on the command line."""

from __future__ import annotations

from conformance.checks import RuntimeSuite


class TestConformance(RuntimeSuite):
    """Uses the session ``scorer_target`` fixture from ``conformance.pytest_plugin``."""
