"""The data plane: what every scoring request goes through, whatever protocol spelt it.

Admission, the request deadline, preparing the task (on the event loop, or in a thread when the
request is large), the model call through the batcher, and the answer's encoding, in that order.
A front (H2O's REST routes today; a second protocol later) turns its bytes into a ``prepare``
function and the answer into its bytes; nothing here knows about HTTP, as MLServer's data plane
serves its REST and gRPC fronts alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from scorer_core.config.logs import current_request_id, new_request_id
from scorer_core.config.settings import Settings
from scorer_core.errors import ScorerError
from scorer_core.execution.executors import Executor
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.service.dispatch import BatchObserver, Dispatcher
from scorer_core.service.scored import ScoredRequest, current_arrival
from scorer_core.service.tasks import PreparedRequest
from scorer_core.wire.cellrows import Typed

__all__ = ["DataPlane", "Observers"]

T = TypeVar("T")


@dataclass(frozen=True)
class Observers:
    """Who watches the plane's work; each optional, so a front without metrics pays nothing."""

    #: Told of each admitted request: when it asked for a slot and when it got one (perf_counter).
    admission: Callable[[float, float], None] | None = None
    #: Told of each batch the model answered.
    batches: Sequence[BatchObserver] = ()
    #: The current request's trace context, carried with its task to the batch observers.
    trace: Callable[[], object] | None = None
    #: Told of each request ``score`` took, answered or failed (monitoring). Called on the event
    #: loop: it must only take note, never wait or do the work of exporting.
    scored: Callable[[ScoredRequest], None] | None = None


class DataPlane:
    """The scoring path shared by every front, over the executor of the loaded model.

    ``executor`` is asked on each request, so that a request before the model has loaded gets
    its ``NotReady`` (503); the dispatcher is built on the first request that finds it loaded.
    """

    def __init__(
        self, executor: Callable[[], Executor], settings: Settings, observers: Observers | None = None
    ) -> None:
        self._executor = executor
        self._settings = settings
        self._observers = observers or Observers()
        self._dispatcher: Dispatcher | None = None

    @property
    def dispatcher(self) -> Dispatcher:
        executor = self._executor()
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(executor, self._settings, self._observers.batches)
        return self._dispatcher

    @property
    def facts(self) -> ModelFacts:
        return self._executor().facts

    def check_capacity(self) -> None:
        """``Overloaded`` (503) now when the request would be refused anyway: under overload a
        refusal must cost nothing, so a front calls this before it reads or parses a body."""
        admission = self.dispatcher.admission
        if admission.full:
            raise admission.refusal()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """A scoring slot from admission, its wait observed; yields the deadline the answer must
        meet (``time.monotonic()``)."""
        scoring = self.dispatcher
        queued = time.perf_counter()
        async with scoring.admission.admit():
            if self._observers.admission is not None:
                self._observers.admission(queued, time.perf_counter())
            yield scoring.deadline()

    async def score(
        self,
        prepare: Callable[[ModelFacts], PreparedRequest],
        answer: Callable[[ModelFacts, PreparedRequest, ScoringResult], T],
        *,
        deadline: float,
        headers: Mapping[str, str],
        outputs: bool,
        off_loop: bool,
        rows: Callable[[int], None] | None = None,
        endpoint: str = "",
    ) -> T:
        """One admitted request, from its parse to its encoded answer.

        ``prepare`` checks the request against the model's facts; ``answer`` shapes and encodes
        the result. With ``off_loop`` both run in a thread, in pieces that stop at ``deadline``,
        so that a large request leaves the event loop to the probes and other requests; a small
        one takes less than the hand-off would save. ``headers``: the request's, keyed in lower
        case, of which the model sees the forwarded ones; ``rows`` is told the request's row
        count once it is known (for the access log); ``endpoint`` names the front's route to the
        ``scored`` observer."""
        scored = self._observers.scored
        if scored is None:
            return await self._score(prepare, answer, deadline, headers, outputs, off_loop, rows, None)
        arrival = current_arrival.get()
        started = time.perf_counter()
        seen = _Seen()
        status, error = 200, None
        try:
            return await self._score(prepare, answer, deadline, headers, outputs, off_loop, rows, seen)
        except ScorerError as exc:
            status, error = exc.status_code, exc.message
            raise
        except asyncio.CancelledError:
            status, error = 499, "the client closed the connection before the answer"
            raise
        except Exception as exc:
            status, error = 500, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            seconds = time.perf_counter() - started
            result = seen.result
            scored(
                ScoredRequest(
                    request_id=current_request_id.get() or new_request_id(),
                    endpoint=endpoint,
                    received=arrival.time if arrival is not None else time.time() - seconds,
                    seconds=seconds,
                    finished=time.monotonic(),
                    facts=self.facts,
                    headers=headers,
                    prefix=arrival.prefix if arrival is not None else None,
                    status=status,
                    error=error,
                    frame=seen.frame,
                    outputs=_answered(result),
                    contributions=result.contributions if result is not None else None,
                )
            )

    async def _score(
        self,
        prepare: Callable[[ModelFacts], PreparedRequest],
        answer: Callable[[ModelFacts, PreparedRequest, ScoringResult], T],
        deadline: float,
        headers: Mapping[str, str],
        outputs: bool,
        off_loop: bool,
        rows: Callable[[int], None] | None,
        seen: _Seen | None,
    ) -> T:
        scoring = self.dispatcher
        facts = self.facts
        if off_loop:
            prepared = await scoring.off_loop(lambda: prepare(facts), deadline)
        else:
            prepared = prepare(facts)
        if rows is not None:
            rows(prepared.frame.num_rows)
        if seen is not None:
            seen.frame = prepared.frame
        trace = self._observers.trace
        task = ScoringTask(
            prepared.frame,
            facts.forwarding.select(headers),
            outputs=outputs,
            shapley=prepared.shapley,
            intervals=prepared.intervals,
            deadline=deadline,
            trace=trace() if trace is not None else None,
        )
        result = await scoring.score(task)
        if seen is not None:
            seen.result = result
        if off_loop:
            return await scoring.off_loop(lambda: answer(facts, prepared, result), deadline)
        return answer(facts, prepared, result)

    async def close(self) -> None:
        if self._dispatcher is not None:
            dispatcher, self._dispatcher = self._dispatcher, None
            await dispatcher.close()


class _Seen:
    """What a watched request got as far as: its rows, its model result."""

    __slots__ = ("frame", "result")

    def __init__(self) -> None:
        self.frame: Typed | None = None
        self.result: ScoringResult | None = None


def _answered(result: ScoringResult | None) -> dict[str, np.ndarray] | None:
    """The result's output columns, the intervals' after them."""
    if result is None or result.outputs is None:
        return None
    if not result.intervals:
        return result.outputs
    return {**result.outputs, **result.intervals}
