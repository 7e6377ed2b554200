"""Conformance suite for scorer_core runtimes: prove a runtime honours the H2O scoring contract.

In a plugin's tests::

    import pytest
    import conformance

    class TestMyRuntime(conformance.RuntimeSuite):
        @pytest.fixture(scope="class")
        @classmethod
        def scorer_target(cls, my_model_path):
            with conformance.start_server(my_model_path, runtime="my-scorer") as target:
                yield target

Or from a shell: ``scorer check MODEL_PATH`` (or ``scorer check --url http://host:port``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.checks import (
        CapabilityChecks,
        ContractChecks,
        ErrorChecks,
        FieldChecks,
        HeaderChecks,
        RowCountChecks,
        RuntimeSuite,
    )
    from conformance.target import CONFORMANCE_FORWARD_HEADERS, ScorerTarget, start_server, wait_ready

__all__ = [
    "CONFORMANCE_FORWARD_HEADERS",
    "CapabilityChecks",
    "ContractChecks",
    "ErrorChecks",
    "FieldChecks",
    "HeaderChecks",
    "RowCountChecks",
    "RuntimeSuite",
    "ScorerTarget",
    "start_server",
    "wait_ready",
]

_TARGET_NAMES = frozenset({"CONFORMANCE_FORWARD_HEADERS", "ScorerTarget", "start_server", "wait_ready"})


def __getattr__(name: str) -> Any:
    # Lazy, so that `scorer check` and the recording plugin load without importing pytest.
    if name not in __all__:
        raise AttributeError(f"module 'conformance' has no attribute {name!r}")
    module = importlib.import_module("conformance.target" if name in _TARGET_NAMES else "conformance.checks")
    return getattr(module, name)
