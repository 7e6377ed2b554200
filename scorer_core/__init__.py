"""scorer_core: a pluggable model-scoring runtime, wire-compatible with H2O's MOJO REST scorer."""

from __future__ import annotations

from scorer_core.configured import ConfiguredModel
from scorer_core.context import forwarded_headers, request_headers
from scorer_core.contributions import group_by_class
from scorer_core.demo import DemoModel
from scorer_core.envsettings import EnvSettings
from scorer_core.errors import (
    AmbiguousRuntime,
    ConfigurationError,
    InvalidRequest,
    ModelError,
    NoRuntimeFound,
    NotReady,
    Overloaded,
    PluginLoadError,
    RowCountMismatch,
    ScorerError,
    ScoringTimeout,
    UnsupportedOperation,
)
from scorer_core.frame import Frame
from scorer_core.headers import ForwardedHeaders
from scorer_core.hookspecs import hookimpl
from scorer_core.runtime import ContributionGroup, Contributions, Outputs, Runtime
from scorer_core.schema import Capabilities, DataType, Field, ModelSchema, ShapleyType

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRuntime",
    "Capabilities",
    "ConfigurationError",
    "ConfiguredModel",
    "ContributionGroup",
    "Contributions",
    "DataType",
    "DemoModel",
    "EnvSettings",
    "Field",
    "ForwardedHeaders",
    "Frame",
    "InvalidRequest",
    "ModelError",
    "ModelSchema",
    "NoRuntimeFound",
    "NotReady",
    "Outputs",
    "Overloaded",
    "PluginLoadError",
    "RowCountMismatch",
    "Runtime",
    "ScorerError",
    "ScoringTimeout",
    "ShapleyType",
    "UnsupportedOperation",
    "forwarded_headers",
    "group_by_class",
    "hookimpl",
    "request_headers",
]
