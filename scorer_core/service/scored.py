"""``ScoredRequest``: what the data plane tells its watchers of each request it took.

Monitoring exports these (``scorer_core/monitor``). The record holds references, not copies: the
request's rows as they were prepared (typed columns, or a small request's cells, typed again by
whoever reads them, off the scoring path) and the model's output columns. Building it costs the
scoring path one small object; everything else is the reader's work, in its own thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from scorer_core.execution.facts import ModelFacts
from scorer_core.runtime import Contributions
from scorer_core.wire.cellrows import Typed

__all__ = ["Arrival", "ScoredRequest", "current_arrival"]


@dataclass(slots=True)
class Arrival:
    """When the request being served arrived (``time.time()``), and the deployment prefix its
    path carried (``/<deployment-id>``, or None), as its front saw them. Not frozen, as
    ``ScoredRequest`` is not: one is made for every monitored request."""

    time: float
    prefix: str | None = None


#: The current request's ``Arrival``, where its front records one (when monitoring is on).
current_arrival: ContextVar[Arrival | None] = ContextVar("scorer_arrival", default=None)


@dataclass(slots=True)
class ScoredRequest:
    """One request the plane took, answered or not. Not frozen: a frozen dataclass's
    constructor sets each field through ``object.__setattr__``, which cost the event loop a
    microsecond a field on every request; nobody changes a record once it is made."""

    #: The request's id (the client's ``X-Request-Id`` when it sent a plain token), as the access
    #: log and the ``X-Request-Id`` answer header carry it.
    request_id: str
    #: Which front's route took it (the ``endpoint`` label of ``/metrics``: ``score``, ``oip_infer``...).
    endpoint: str
    #: When it arrived (``time.time()``), and how long it took to its answer, in seconds.
    received: float
    seconds: float
    #: When its answer was ready (``time.monotonic()``), to time the export's delay.
    finished: float
    facts: ModelFacts
    #: The request's headers, keyed in lower case.
    headers: Mapping[str, str]
    #: The deployment prefix its path carried, or None.
    prefix: str | None
    #: The HTTP status of its answer (499: the client left first), and the error's text when not 200.
    status: int
    error: str | None = None
    #: Its rows, once they were checked (None when the request was refused before).
    frame: Typed | None = None
    #: The model's answer: output columns (with the intervals' where asked), or contributions.
    outputs: Mapping[str, np.ndarray] | None = None
    contributions: Contributions | None = None
    #: The body of an H2O ``/model/score`` request whose rows are its cells (``CellRows``), as it
    #: came (None for any other request): monitoring reads the cells again from it, in its export
    #: process.
    #: Reading the cells themselves on the event loop cost more than the rest of a monitored
    #: request's record: a single row of 30 cells is 31 objects, cold in memory by the time the
    #: answer is ready; the body is one.
    score_body: bytes | None = None

    @property
    def num_rows(self) -> int:
        return self.frame.num_rows if self.frame is not None else 0
