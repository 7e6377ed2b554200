"""Replacing the served model without dropping a request: load beside, check, warm, switch, drain.

The new model loads beside the old one (its own worker processes, or a second in-process
executor) while the old one serves. It is then checked (its input fields against the old
model's, its sample row scored) and warmed through the lane it will serve from. The switch is
one step on the event loop, between two requests: a request that begins after it is scored by
the new model, one that began before finishes on the old one, and no model call ever merges the
two (``DataPlane`` keeps a lane per model). The old model is then drained, closed and its memory
given back. Anything that fails before the switch (the load, a check, the time allowed) leaves
the old model serving and is answered with the reason.

Protocol-free: the admin routes (``server/admin_routes``) and SIGHUP are the triggers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from scorer_core.config.plugins import Plugins
from scorer_core.config.settings import Settings
from scorer_core.errors import NotReady, ScorerError
from scorer_core.execution.executors import Executor, start_executor
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.scoring import ScoringTask
from scorer_core.execution.timeouts import within
from scorer_core.schema import Field
from scorer_core.service.host import ModelHost
from scorer_core.service.plane import DataPlane
from scorer_core.service.tasks import prepare_score
from scorer_core.service.versions import Version, version_of
from scorer_core.wire.contract import ScoreRequest

__all__ = [
    "OUTCOMES",
    "ModelReplacement",
    "ModelVersion",
    "ReplacementFailed",
    "ReplacementRequest",
    "input_changes",
    "probe_tasks",
]

log = logging.getLogger(__name__)

#: How a replacement ended, as the metrics count them.
OUTCOMES = ("succeeded", "failed", "refused", "timed_out")
#: Seconds of pause before each step of a replacement that holds the server's GIL for a while in
#: the server process: the warm-up call, just after the load, and the release of the replaced
#: model's memory (a full collection, which holds it throughout). The requests in flight finish
#: in between, so that none waits for the sum of the steps: run back to back, the load, the
#: warm-up and the collection made the p99 of the requests they overlapped 1.9 to 2.4 times the
#: p99 of the others, in process on 2 cores (bench/replacement.py); paused, 1.3 to 1.6. Idle time,
#: not CPU; a replacement takes 0.2 s longer.
STEP_PAUSE = 0.1


#: What a load gives: the runtime's name, the executor, its seconds, the files it loaded from.
_Loaded = tuple[str, Executor, float, Version]


class ReplacementFailed(ScorerError):
    """The replacement did not happen; the model that was serving still is.

    ``outcome``: ``failed`` (the new model would not load or score, 422), ``refused`` (another
    replacement is running, the inputs changed unasked, nothing to roll back to: 409),
    ``timed_out`` (SCORER_MODEL_LOAD_TIMEOUT, 504)."""

    _STATUS = {"failed": 422, "refused": 409, "timed_out": 504}

    def __init__(self, message: str, *, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status_code = self._STATUS[outcome]


@dataclass(frozen=True)
class ReplacementRequest:
    """What to serve next."""

    path: Path
    #: The runtime to load it with; None: the one whose ``can_load`` claims it.
    runtime: str | None = None
    #: Whether a change of input fields is intended (refused otherwise: clients would break).
    schema_change: bool = False
    #: The id to serve it under; None: the model's own (SCORER_MODEL_ID names the start-up model).
    model_id: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    """A model this server has served."""

    path: Path
    runtime: str
    model_id: str
    loaded_at: float
    load_seconds: float
    status: str = "serving"
    replaced_at: float | None = None
    #: The id it was asked to serve under (SCORER_MODEL_ID, a request's ``id``), not its own.
    given_id: str | None = None
    #: Its files as they were when it loaded (``versions.version_of``): a rollback checks them.
    files: Version = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "path": str(self.path),
            "runtime": self.runtime,
            "status": self.status,
            "loaded_at": _iso(self.loaded_at),
            "load_seconds": round(self.load_seconds, 3),
            "replaced_at": _iso(self.replaced_at) if self.replaced_at is not None else None,
        }


class ModelReplacement:
    """Replaces ``host``'s model on ``plane``, one replacement at a time, and remembers the
    models replaced (SCORER_MODEL_KEEP_PREVIOUS) for ``rollback``.

    Call its coroutines on the plane's event loop."""

    def __init__(
        self,
        host: ModelHost,
        plane: DataPlane,
        plugins: Plugins,
        settings: Settings,
        *,
        path: Path,
        runtime: str,
    ) -> None:
        self._host = host
        self._plane = plane
        self._plugins = plugins
        self._settings = settings
        #: The start-up model: SCORER_MODEL_ID applies to it (and to it again on SIGHUP) only.
        self.startup_path = path
        self._startup_runtime = runtime
        #: The start-up path's files as at start-up (the model loads from them in the background).
        self.startup_files = version_of(path)
        self._current: ModelVersion | None = None
        self._previous: collections.deque[ModelVersion] = collections.deque(
            maxlen=settings.model_keep_previous
        )
        self._lock = asyncio.Lock()
        self._running: tuple[Path, float] | None = None
        self._last_failure: dict[str, Any] | None = None
        #: Replacements by outcome (``OUTCOMES``), for the metrics.
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._closed_restarts = 0
        #: Executors of abandoned loads (timed out, or the server stopped) being closed.
        self._closing: set[asyncio.Future[None]] = set()
        #: In-process loads that timed out and still run (a thread cannot be stopped): while one
        #: does, another replacement is refused, so that they cannot pile up.
        self._abandoned_loads = 0
        #: Replaced executors not yet closed, and those closed with a model call still running.
        self._retiring: list[Executor] = []
        self._lingering: list[Executor] = []
        self._retirements: set[asyncio.Task[tuple[bool, dict[str, float]]]] = set()
        self._stopping = False

    @property
    def current(self) -> ModelVersion:
        """The model serving now (``NotReady``, 503, while the start-up model loads)."""
        facts = self._host.facts
        if self._current is None:
            self._current = ModelVersion(
                self.startup_path,
                self._startup_runtime,
                facts.model_id,
                self._host.loaded_at or time.time(),
                self._host.load_seconds or 0.0,
                given_id=self._settings.model_id,
                files=self.startup_files,
            )
        return self._current

    def describe(self) -> dict[str, Any]:
        """``GET /admin/model``: the model serving, those kept for rollback, a replacement under
        way, the last failure, and the replacements so far by outcome."""
        running = self._running
        return {
            "current": self.current.to_json(),
            "previous": [version.to_json() for version in reversed(self._previous)],
            "replacing": {"path": str(running[0]), "since": _iso(running[1])} if running else None,
            "last_failure": self._last_failure,
            "replacements": dict(self.counts),
            "abandoned_loads_running": self._abandoned_loads,
            "replaced_models_with_calls_running": len(self.lingering()),
        }

    @property
    def retired_restarts(self) -> int:
        """Worker restarts of the executors replaced, counted from the switch on, so that the
        metric's count never goes back while the old pool drains."""
        return self._closed_restarts + sum(executor.restarts for executor in self._retiring)

    def lingering(self) -> list[Executor]:
        """Replaced executors closed while a model call still ran (a thread cannot be stopped):
        ``/healthz`` must keep telling of a stuck one until it returns."""
        self._lingering = [executor for executor in self._lingering if executor.oldest_call_age() > 0]
        return list(self._lingering)

    def oldest_lingering_call(self) -> float:
        """Seconds the longest model call still running on a replaced model has run (0: none)."""
        return max((executor.oldest_call_age() for executor in self.lingering()), default=0.0)

    async def reload(self, trigger: str = "reload") -> dict[str, Any]:
        """Load the start-up path again (SIGHUP, SCORER_MODEL_WATCH): a new version copied over
        it. Waits for a replacement under way instead of refusing: neither a signal nor the
        watch can be told to retry."""
        if not self._host.loaded.is_set():  # a new version copied while the first one loads
            log.info("The start-up model is still loading; '%s' is loaded again after it", self.startup_path)
            await asyncio.to_thread(self._host.loaded.wait)
        asked = ReplacementRequest(self.startup_path, self._startup_runtime)
        return await self.replace(asked, trigger=trigger, wait=True)

    async def rollback(self) -> dict[str, Any]:
        """Serve the model replaced last again, loaded from its path and checked to be the same
        model (its id); the model serving now becomes the one kept."""
        if not self._previous:
            self._count_refusal("no replaced model is kept to roll back to")
        kept = self._previous[-1]
        if kept.files and await asyncio.to_thread(version_of, kept.path) != kept.files:
            self._count_refusal(
                f"the files at '{kept.path}' changed since model '{kept.model_id}' was loaded from "
                "them (a new version copied over it?): rolling back would serve another model"
            )
        asked = ReplacementRequest(kept.path, kept.runtime, schema_change=True, model_id=kept.given_id)
        return await self.replace(asked, trigger="rollback", kept=kept)

    async def replace(
        self,
        asked: ReplacementRequest,
        *,
        trigger: str = "admin",
        kept: ModelVersion | None = None,
        wait: bool = False,
    ) -> dict[str, Any]:
        """Serve ``asked``'s model instead of the current one, or raise ``ReplacementFailed``
        with the current one still serving. Returns what was done. A replacement under way
        refuses this one (409) unless ``wait``. ``kept``: the replaced model a rollback returns
        to, which the model loaded must be."""
        self.current  # noqa: B018 -- NotReady (503) while the start-up model loads
        if self._stopping:
            raise NotReady("the server is stopping", retry_after=None)
        if self._abandoned_loads:
            self._count_refusal(
                f"{self._abandoned_loads} model load(s) that timed out still run in the server "
                "process, where a thread cannot be stopped; restart the server to free them"
            )
        if self._lock.locked() and not wait:
            running = self._running
            since = f" of '{running[0]}', started {time.time() - running[1]:.0f} s ago" if running else ""
            self._count_refusal(f"another replacement{since} is under way; retry when it has finished")
        async with self._lock:
            old = self.current
            self._running = (asked.path, time.time())
            started = time.perf_counter()
            try:
                report = await self._replace(asked, old, trigger, kept)
            except ReplacementFailed as failed:
                self.counts[failed.outcome] += 1
                self._last_failure = {
                    "path": str(asked.path),
                    "reason": failed.message,
                    "outcome": failed.outcome,
                    "at": _iso(time.time()),
                }
                log.error("Replacing the model by '%s' (%s) failed: %s", asked.path, trigger, failed.message)
                raise
            finally:
                self._running = None
            report["seconds"] = round(time.perf_counter() - started, 3)
            return report

    async def _replace(
        self, asked: ReplacementRequest, old: ModelVersion, trigger: str, kept: ModelVersion | None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self._settings.model_load_timeout
        runtime_name, executor, load_seconds, files = await self._load(asked, deadline)
        try:
            facts = executor.facts
            if kept is not None and facts.model_id != kept.model_id:
                raise ReplacementFailed(
                    f"'{asked.path}' now holds model '{facts.model_id}', not '{kept.model_id}' that was "
                    "replaced: its files changed since; nothing was rolled back",
                    outcome="refused",
                )
            changes = input_changes(self._host.facts, facts)
            if changes and not asked.schema_change:
                raise ReplacementFailed(
                    f"the new model's input fields differ from the served model's ({'; '.join(changes)}): "
                    'clients would break; send "schema_change": true if that is intended',
                    outcome="refused",
                )
            await asyncio.sleep(STEP_PAUSE)
            warm_started = time.perf_counter()
            warmed = await self._warm(executor, facts, deadline)
            warm_seconds = time.perf_counter() - warm_started
        except BaseException:
            await self._plane.discard(executor)
            await executor.close()
            raise
        replaced = self._host.swap(executor, load_seconds)  # the switch: no await between these two
        self._plane.adopt()
        now = time.time()
        self._current = ModelVersion(
            asked.path,
            runtime_name,
            facts.model_id,
            now,
            load_seconds,
            given_id=self._given_id(asked),
            files=files,
        )
        self._retiring.append(replaced)
        self.counts["succeeded"] += 1  # switched: whatever the retirement meets, this succeeded
        if kept is not None and kept in self._previous:
            self._previous.remove(kept)  # serving again: no longer kept
        self._previous.append(replace(old, status="replaced", replaced_at=now))
        log.info(
            "Model replaced (%s): now '%s' (id %s, runtime %s), was '%s' (id %s)",
            trigger,
            asked.path,
            facts.model_id,
            runtime_name,
            old.path,
            old.model_id,
        )
        # Shielded: a request cancelled now must not leave the replaced model open; ``close``
        # waits for it.
        retirement = asyncio.ensure_future(self._retire(replaced))
        self._retirements.add(retirement)
        retirement.add_done_callback(self._retirements.discard)
        drained, retired = await asyncio.shield(retirement)
        return {
            "replaced": True,
            "trigger": trigger,
            "current": self._current.to_json(),
            "previous": old.to_json() | {"status": "replaced", "replaced_at": _iso(now)},
            "input_fields_changed": changes,
            "warm_calls": warmed,
            "drained": drained,
            "steps_seconds": {
                "load": round(load_seconds, 3),
                "warm": round(warm_seconds, 3),
                **{step: round(seconds, 3) for step, seconds in retired.items()},
            },
        }

    def _runtime_for(self, asked: ReplacementRequest) -> str:
        """The runtime that serves ``asked.path`` (``check_model`` passed); ``ReplacementFailed``
        naming why none does."""
        path = asked.path
        if not path.exists():
            raise ReplacementFailed(f"no model at '{path}': no such file or directory", outcome="failed")
        try:
            runtime_cls = self._plugins.select_runtime(path, asked.runtime)
            runtime_cls.check_model(path)
        except Exception as exc:
            raise _failure(f"'{path}' cannot be served", exc) from exc
        return runtime_cls.name

    def _given_id(self, asked: ReplacementRequest) -> str | None:
        """The id ``asked``'s model serves under instead of its own: the request's, else
        SCORER_MODEL_ID for the start-up path (which it names), else none."""
        if asked.model_id is None and asked.path == self.startup_path:
            return self._settings.model_id
        return asked.model_id

    def _settings_for(self, asked: ReplacementRequest) -> Settings:
        """The start-up settings, but the served name kept (clients address it) and the id
        given (``_given_id``)."""
        return self._settings.model_copy(
            update={"model_name": self._host.facts.model_name, "model_id": self._given_id(asked)}
        )

    async def _load(self, asked: ReplacementRequest, deadline: float) -> _Loaded:
        """The new model's runtime name, executor, load time and files as loaded, found and
        loaded in a thread of its own (a path on a hung mount, or a load that hangs, must not hold
        a thread the server needs); ``ReplacementFailed`` past ``deadline``."""
        loop = asyncio.get_running_loop()
        loaded: asyncio.Future[_Loaded] = loop.create_future()
        starting: list[Executor] = []
        settings = self._settings_for(asked)

        def load() -> None:
            started = time.perf_counter()
            try:
                files = version_of(asked.path)  # before the load: a copy after it is a new version
                runtime_name = self._runtime_for(asked)
                executor = start_executor(
                    self._plugins, runtime_name, asked.path, settings, on_starting=starting.append
                )
                outcome: _Loaded | BaseException = (
                    runtime_name,
                    executor,
                    time.perf_counter() - started,
                    files,
                )
            except BaseException as exc:
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
                loop.call_soon_threadsafe(_settle, loaded, outcome)

        threading.Thread(target=load, name="model-replacement", daemon=True).start()
        try:
            return await within(asyncio.shield(loaded), deadline - time.monotonic())
        except TimeoutError:
            self._abandon(loaded, starting)
            raise ReplacementFailed(
                f"'{asked.path}' did not load within {self._settings.model_load_timeout:g} s "
                "(SCORER_MODEL_LOAD_TIMEOUT)",
                outcome="timed_out",
            ) from None
        except asyncio.CancelledError:
            self._abandon(loaded, starting)
            raise
        except ReplacementFailed:
            raise
        except Exception as exc:
            raise _failure(f"'{asked.path}' failed to load", exc) from exc

    def _abandon(self, loaded: asyncio.Future[_Loaded], starting: list[Executor]) -> None:
        """Stop a load nobody waits for any more: worker processes still loading are stopped;
        an in-process load (a thread cannot be stopped) is closed if it ever finishes."""
        for executor in starting:
            self._close_later(executor)
        in_process = not starting  # a worker pool is handed over before its processes load
        if in_process:
            self._abandoned_loads += 1

        def close_if_loaded(future: asyncio.Future[_Loaded]) -> None:
            if in_process:
                self._abandoned_loads -= 1
            if not future.cancelled() and future.exception() is None:
                log.warning("An abandoned model load finished after all; closing it")
                self._close_later(future.result()[1])

        loaded.add_done_callback(close_if_loaded)

    def _close_later(self, executor: Executor) -> None:
        task = asyncio.ensure_future(executor.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _warm(self, executor: Executor, facts: ModelFacts, deadline: float) -> int:
        """Score the new model's sample row, through the lane it will serve from, once per model
        call it can take at once; ``ReplacementFailed`` unless each answer holds that one row."""
        calls = max(1, executor.concurrency)
        try:
            results = await within(
                self._plane.warm(executor, probe_tasks(facts, calls, deadline)), deadline - time.monotonic()
            )
        except TimeoutError:
            raise ReplacementFailed(
                f"the new model did not score its sample row within SCORER_MODEL_LOAD_TIMEOUT "
                f"({self._settings.model_load_timeout:g} s)",
                outcome="timed_out",
            ) from None
        except Exception as exc:
            raise _failure("the new model failed to score its sample row", exc) from exc
        for result in results:
            rows = {len(column) for column in (result.outputs or {}).values()}
            if rows != {1}:
                raise ReplacementFailed(
                    f"the new model answered its sample row with {sorted(rows) or 'no'} rows of outputs",
                    outcome="failed",
                )
        return len(results)

    async def _retire(self, replaced: Executor) -> tuple[bool, dict[str, float]]:
        """Drain the replaced model's requests, close it, and give its memory back; whether it
        drained (no request left, no model call running), and the seconds of each step. Never
        raises: the new model serves whatever this meets."""
        started = time.perf_counter()
        steps: dict[str, float] = {}
        drained = False
        try:
            drained = await self._plane.drain(replaced, self._settings.request_timeout + 1.0)
            # A request that got its 504 has left, but its model call may still run.
            drained = drained and replaced.oldest_call_age() == 0
            if not drained:
                log.warning("The replaced model still had requests or model calls past the request timeout")
            steps["drain"] = time.perf_counter() - started
            closing = time.perf_counter()
            await replaced.close()
            steps["close"] = time.perf_counter() - closing
            if replaced.oldest_call_age() > 0:
                self._lingering.append(replaced)  # /healthz keeps telling of it
            await asyncio.sleep(STEP_PAUSE)
            freeing = time.perf_counter()
            await asyncio.to_thread(_give_memory_back)
            steps["memory"] = time.perf_counter() - freeing
        except Exception:
            log.exception("Closing the replaced model failed")
        finally:
            self._retiring.remove(replaced)
            self._closed_restarts += replaced.restarts
        return drained, steps

    def _count_refusal(self, message: str) -> NoReturn:
        self.counts["refused"] += 1
        raise ReplacementFailed(message, outcome="refused")

    async def close(self) -> None:
        """Refuse replacements from now on; wait for the replaced models being retired and the
        abandoned loads being closed. Before the plane and the host close."""
        self._stopping = True
        await asyncio.gather(*self._retirements, return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)


def probe_tasks(facts: ModelFacts, count: int, deadline: float) -> Sequence[ScoringTask]:
    """``count`` tasks of the model's sample row, as ``/model/sample_request`` gives it."""
    request = ScoreRequest.of_cells([field.name for field in facts.schema.inputs], [list(facts.sample_row)])
    frame = prepare_score(request, facts).frame
    task = ScoringTask(frame, facts.forwarding.select({}), deadline=deadline)
    return [task] * count


def input_changes(old: ModelFacts, new: ModelFacts) -> list[str]:
    """How ``new``'s input fields differ from ``old``'s: added, removed, retyped, reordered."""
    before = {field.name: field for field in old.schema.inputs}
    after = {field.name: field for field in new.schema.inputs}
    changes = []
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    if added:
        changes.append(f"added {', '.join(added)}")
    if removed:
        changes.append(f"removed {', '.join(removed)}")
    retyped = [
        f"{name} {_type(before[name])} -> {_type(field)}"
        for name, field in after.items()
        if name in before and _type(before[name]) != _type(field)
    ]
    if retyped:
        changes.append(f"retyped {', '.join(retyped)}")
    kept = [name for name in after if name in before]
    if not changes and kept != [name for name in before if name in after]:
        changes.append(
            f"reordered to {', '.join(kept)}, the order of an Open Inference Protocol [N, F] tensor"
        )
    return changes


def _type(field: Field) -> str:
    return field.data_type.value


def _failure(what: str, exc: BaseException) -> ReplacementFailed:
    """``what`` failed (422), saying why: a ``ScorerError``'s own message, else the exception's
    type and text."""
    why = exc.message if isinstance(exc, ScorerError) else f"{type(exc).__name__}: {exc}"
    return ReplacementFailed(f"{what}: {why}", outcome="failed")


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _give_memory_back() -> None:
    """Collect the replaced model's objects, then hand freed heap back to the system.

    The collection leaves the objects frozen at start-up (``server.app``) alone: unfreezing them
    to walk them all held the GIL for 200 ms, every request waiting. A model loaded by a
    replacement is never frozen, so it is collected here in full once replaced; of the start-up
    model, what refcounting frees goes (nearly all of a model: arrays, trees, weights), and only
    objects it held in reference cycles stay, once. glibc keeps freed memory in its arenas;
    ``malloc_trim`` returns it."""
    gc.collect()
    _malloc_trim()


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
