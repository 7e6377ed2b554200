"""Scored requests built by hand, as the data plane tells ``Monitor.offer`` of them, for the
monitoring export's unit tests (outbox, events, file sink): no server, no model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from scorer_core.config.forwarding import HeaderForwarding
from scorer_core.config.shapley import ShapleyPolicy
from scorer_core.execution.facts import ModelFacts
from scorer_core.frame import Frame
from scorer_core.schema import Capabilities, DataType, Field, ModelSchema
from scorer_core.service.scored import ScoredRequest

INPUTS = (Field("x", DataType.FLOAT64), Field("name", DataType.STR))

FACTS = ModelFacts(
    runtime="probe-scorer",
    path=Path("/models/m.probe"),
    schema=ModelSchema(inputs=INPUTS, outputs=(Field("score", DataType.FLOAT64),)),
    model_id="model-1",
    model_name="m",
    capabilities=Capabilities(),
    shapley=ShapleyPolicy.from_settings(None, None),
    forwarding=HeaderForwarding(),
    missing_values=None,
    sample_row=("1.5", "a"),
)


def rows_frame(rows: int) -> Frame:
    """``rows`` rows of the model's two inputs: x = 0, 1, 2...; name = "n0", "n1"..."""
    names = np.array([f"n{i}" for i in range(rows)], dtype=object)
    return Frame({"x": np.arange(rows, dtype=float), "name": names}, rows)


def scored(request_id: str = "r1", rows: int = 1, **changes: Any) -> ScoredRequest:
    """A request of ``rows`` rows (``rows_frame``) answered 200 with score = 2x, unless
    ``changes`` say otherwise (any ``ScoredRequest`` field)."""
    fields: dict[str, Any] = {
        "request_id": request_id,
        "endpoint": "score",
        "received": time.time(),
        "seconds": 0.002,
        "finished": time.monotonic(),
        "facts": FACTS,
        "headers": {},
        "prefix": None,
        "status": 200,
        "frame": rows_frame(rows),
        "outputs": {"score": np.arange(rows, dtype=float) * 2},
    }
    fields.update(changes)
    return ScoredRequest(**fields)
