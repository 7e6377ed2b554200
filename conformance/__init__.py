"""Conformance suite for scorer_core runtimes: prove a runtime honours the H2O scoring contract.

In a plugin's tests::

    import conformance

    class TestMyRuntime(conformance.RuntimeSuite):
        scorer_target = conformance.served("model.my", runtime="my-scorer", env={...})

A model that a fixture builds: ``conformance.served(lambda fixture: fixture("my_model").path)``.

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
        served,
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
    "served",
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
