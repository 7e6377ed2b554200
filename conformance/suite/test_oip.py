"""Collects every Open Inference Protocol check against the target given on the command line."""

from __future__ import annotations

from conformance.oip import OIPSuite


class TestOpenInferenceProtocol(OIPSuite):
    """Uses the session ``oip_target`` and ``oip_model_name`` fixtures from ``conformance.pytest_plugin``."""
