"""The scoring seam: one model call for a task, with headers set and results checked.

``run_task`` is one model call; ``scorer_core.execution.isolation.run_batch`` merges tasks into
one such call and isolates the failing ones when it fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from scorer_core.context import forwarded_headers
from scorer_core.errors import ModelError, ScorerError
from scorer_core.execution.checks import check_columns, check_contributions
from scorer_core.headers import ForwardedHeaders
from scorer_core.runtime import ContributionGroup, Contributions, Runtime
from scorer_core.schema import ShapleyType
from scorer_core.wire.cellrows import Typed, typed
from scorer_core.wire.cells import build_frame, shortened

__all__ = ["ScoringResult", "ScoringTask", "run_task"]

log = logging.getLogger(__name__)
#: Characters of a model's own error message passed on (to the 500's body and the log): models
#: quote the input they choke on, and a client's cell of megabytes must not become a log line of
#: megabytes.
MODEL_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class ScoringTask:
    """The model work one request needs."""

    #: The rows to score: typed, or a small request's cells, typed with its batch's (``wire.cellrows``).
    frame: Typed
    headers: ForwardedHeaders
    outputs: bool = True
    shapley: ShapleyType = ShapleyType.NONE
    intervals: bool = False
    #: When the request's answer stops being of use (``time.monotonic()``, a clock that Linux
    #: shares between processes); None: never. Model calls are not made for an expired task.
    deadline: float | None = None
    #: The request's trace context, opaque here: handed back to the batcher's observer for the
    #: batch's spans; never part of a batch key, never sent to model code.
    trace: object | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ScoringResult:
    """What the model returned for one task, checked to hold exactly the task's rows."""

    outputs: dict[str, np.ndarray] | None = None
    intervals: dict[str, np.ndarray] | None = None
    contributions: Contributions | None = None


def run_task(runtime: Runtime, task: ScoringTask) -> ScoringResult:
    """Run one task's model calls under its forwarded headers and validate every result."""
    name = runtime.name
    frame = typed(task.frame)  # InvalidRequest (the 400 naming the bad cell) before any model call
    n = frame.num_rows
    with forwarded_headers(task.headers):
        try:
            outputs = intervals = None
            contributions = None
            if task.outputs and n:
                if task.intervals:
                    raw, raw_bounds = runtime.score_with_intervals(frame)
                    declared = runtime.schema.interval_output_names or None
                    intervals = check_columns(name, "prediction intervals", raw_bounds, declared, n)
                else:
                    raw = runtime.score(frame)
                outputs = check_columns(name, "scoring", raw, runtime.schema.output_names, n)
            elif task.outputs:
                outputs = {f.name: np.empty(0, dtype=object) for f in runtime.schema.outputs}
            if task.shapley is not ShapleyType.NONE:
                contributions = (
                    check_contributions(name, runtime.contributions(frame, task.shapley), n)
                    if n
                    else _no_rows_contributions(runtime, task.shapley)
                )
        except ScorerError:
            raise
        except Exception as exc:
            said = shortened(str(exc), MODEL_MESSAGE_CHARS)
            raise ModelError(f"Runtime '{name}' raised {type(exc).__name__}: {said}", runtime=name) from exc
    return ScoringResult(outputs, intervals, contributions)


def _no_rows_contributions(runtime: Runtime, shapley: ShapleyType) -> Contributions:
    """Contributions for a request of no rows: the features and groups, with no values.

    Clients send ``rows: []`` to learn the feature names. Runtimes are never called with zero
    rows; the sample row is scored instead and its values dropped, so every runtime answers the
    same way without a branch of its own.
    """
    inputs = runtime.schema.inputs
    row = list(runtime.example_row())
    sample = build_frame([f.name for f in inputs], [row], inputs, runtime.missing_values)
    scored = check_contributions(runtime.name, runtime.contributions(sample, shapley), 1)
    return Contributions(
        scored.features, [ContributionGroup(g.output_group, g.values[:0]) for g in scored.groups]
    )
