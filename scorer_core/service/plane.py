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
from typing import Generic, TypeVar

import numpy as np

from scorer_core.config.logs import current_request_id, new_request_id
from scorer_core.config.settings import Settings
from scorer_core.errors import ScorerError
from scorer_core.execution.executors import Executor
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringResult, ScoringTask
from scorer_core.execution.timeouts import within
from scorer_core.service.admission import Admission
from scorer_core.service.dispatch import BatchObserver, Dispatcher
from scorer_core.service.scored import ScoredRequest, current_arrival
from scorer_core.service.tasks import PreparedRequest
from scorer_core.wire.cellrows import CellRows, Typed

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
    its ``NotReady`` (503). Each executor it has served gets a lane of its own (its batcher and
    its requests in flight), built on the first request that finds it: when the model is
    replaced, requests that began on the old executor finish there and never share a model call
    with the new one, and ``drain`` waits for the last of them. Admission is the plane's, shared
    by every lane, so a replacement neither resets nor doubles the capacity.
    """

    def __init__(
        self, executor: Callable[[], Executor], settings: Settings, observers: Observers | None = None
    ) -> None:
        self._executor = executor
        self._settings = settings
        self._observers = observers or Observers()
        self.admission = Admission(
            settings.scoring_concurrency, settings.queue_size, settings.queue_timeout, settings.reject_status
        )
        self._lane: _Lane | None = None
        #: Lanes built ahead of their executor's turn (``warm``), and lanes replaced but not drained.
        self._waiting: dict[int, _Lane] = {}
        self._retired: dict[int, _Lane] = {}

    def _current(self) -> _Lane:
        executor = self._executor()
        lane = self._lane
        if lane is None or lane.executor is not executor:
            lane = self._switch(executor)
        return lane

    def _switch(self, executor: Executor) -> _Lane:
        lane = self._waiting.pop(id(executor), None) or self._new_lane(executor)
        old, self._lane = self._lane, lane
        if old is not None:
            self._retired[id(old.executor)] = old
            old.retire()
        return lane

    def _new_lane(self, executor: Executor) -> _Lane:
        return _Lane(executor, Dispatcher(executor, self._settings, self._observers.batches))

    @property
    def facts(self) -> ModelFacts:
        return self._executor().facts

    def check_capacity(self) -> None:
        """``Overloaded`` (503) now when the request would be refused anyway: under overload a
        refusal must cost nothing, so a front calls this before it reads or parses a body."""
        if self.admission.full:
            raise self.admission.refusal()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """A scoring slot from admission, its wait observed; yields the deadline the answer must
        meet (``time.monotonic()``)."""
        self._executor()  # NotReady (503) before the model has loaded, as without a slot
        queued = time.perf_counter()
        async with self.admission.admit():
            if self._observers.admission is not None:
                self._observers.admission(queued, time.perf_counter())
            yield time.monotonic() + self._settings.request_timeout

    async def warm(self, executor: Executor, tasks: Sequence[ScoringTask]) -> list[ScoringResult]:
        """Score ``tasks`` on ``executor`` before it serves, through the lane it will serve
        from (its batcher, its worker processes): a replacement's probe and warm-up."""
        lane = self._waiting.get(id(executor))
        if lane is None:
            lane = self._waiting[id(executor)] = self._new_lane(executor)
        return [await lane.dispatcher.score(task) for task in tasks]

    async def discard(self, executor: Executor) -> None:
        """Forget a lane ``warm`` built for an executor that will not serve."""
        lane = self._waiting.pop(id(executor), None)
        if lane is not None:
            await lane.dispatcher.close()

    def adopt(self) -> None:
        """Serve from the executor the host now holds: requests that begin from now on take its
        lane; those that began before finish on theirs."""
        self._current()

    async def drain(self, executor: Executor, timeout: float) -> bool:
        """Wait until no request scores on ``executor``'s lane, at most ``timeout`` seconds, then
        close the lane (a request still there gets its 503); whether it drained in time."""
        lane = self._retired.get(id(executor))
        if lane is None:
            return True
        try:
            await within(lane.idle.wait(), timeout)
            drained = True
        except TimeoutError:
            drained = False
        self._retired.pop(id(executor), None)
        await lane.dispatcher.close()
        return drained

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
        score_body: bytes | None = None,
    ) -> T:
        """One admitted request, from its parse to its encoded answer, on the lane of the model
        served when it began.

        ``prepare`` checks the request against the model's facts; ``answer`` shapes and encodes
        the result. With ``off_loop`` both run in a thread, in pieces that stop at ``deadline``,
        so that a large request leaves the event loop to the probes and other requests; a small
        one takes less than the hand-off would save. ``headers``: the request's, keyed in lower
        case, of which the model sees the forwarded ones; ``rows`` is told the request's row
        count once it is known (for the access log); ``endpoint`` names the front's route to the
        ``scored`` observer, and ``score_body`` is the body of an H2O score request, which that
        observer may read the rows from again (``ScoredRequest.score_body``)."""
        lane = self._current()
        call = _Call(lane, prepare, answer, deadline, headers, outputs, off_loop, rows, score_body)
        lane.in_flight += 1
        try:
            if self._observers.scored is None:
                return await self._score(call, None)
            return await self._watched(call, endpoint, self._observers.scored)
        finally:
            lane.left()

    async def _watched(self, call: _Call[T], endpoint: str, scored: Callable[[ScoredRequest], None]) -> T:
        """``_score``, telling ``scored`` what the request got, answered or failed."""
        arrival = current_arrival.get()
        started = time.perf_counter()
        seen = _Seen()
        status, error = 200, None
        try:
            return await self._score(call, seen)
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
                    facts=call.lane.facts,
                    headers=call.headers,
                    prefix=arrival.prefix if arrival is not None else None,
                    status=status,
                    error=error,
                    frame=seen.frame,
                    outputs=_answered(result),
                    contributions=result.contributions if result is not None else None,
                    # Only beside cells: the body of rows typed already is of no use to a reader.
                    score_body=call.score_body if type(seen.frame) is CellRows else None,
                )
            )

    async def _score(self, call: _Call[T], seen: _Seen | None) -> T:
        scoring = call.lane.dispatcher
        facts = call.lane.facts
        prepare, answer, deadline = call.prepare, call.answer, call.deadline
        if call.off_loop:
            prepared = await scoring.off_loop(lambda: prepare(facts), deadline)
        else:
            prepared = prepare(facts)
        if call.rows is not None:
            call.rows(prepared.frame.num_rows)
        if seen is not None:
            seen.frame = prepared.frame
        trace = self._observers.trace
        task = ScoringTask(
            prepared.frame,
            facts.forwarding.select(call.headers),
            outputs=call.outputs,
            shapley=prepared.shapley,
            intervals=prepared.intervals,
            deadline=deadline,
            trace=trace() if trace is not None else None,
        )
        result = await scoring.score(task)
        if seen is not None:
            seen.result = result
        if call.off_loop:
            return await scoring.off_loop(lambda: answer(facts, prepared, result), deadline)
        return answer(facts, prepared, result)

    async def close(self) -> None:
        lanes = [*self._waiting.values(), *self._retired.values()]
        if self._lane is not None:
            lanes.append(self._lane)
        self._lane = None
        self._waiting.clear()
        self._retired.clear()
        for lane in lanes:
            await lane.dispatcher.close()


class _Lane:
    """One executor's share of the plane: its batcher and deadline, and its requests in flight."""

    __slots__ = ("dispatcher", "executor", "facts", "idle", "in_flight", "retired")

    def __init__(self, executor: Executor, dispatcher: Dispatcher) -> None:
        self.executor = executor
        self.facts = executor.facts
        self.dispatcher = dispatcher
        self.in_flight = 0
        self.retired = False
        #: Set once the lane is retired and its last request has left.
        self.idle = asyncio.Event()

    def retire(self) -> None:
        self.retired = True
        if self.in_flight == 0:
            self.idle.set()

    def left(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self.idle.set()


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One request's work on its lane, as ``score`` was given it."""

    lane: _Lane
    prepare: Callable[[ModelFacts], PreparedRequest]
    answer: Callable[[ModelFacts, PreparedRequest, ScoringResult], T]
    deadline: float
    headers: Mapping[str, str]
    outputs: bool
    off_loop: bool
    rows: Callable[[int], None] | None
    score_body: bytes | None


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
