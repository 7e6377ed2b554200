"""Executors: where model calls run. Each one alone owns the ``Runtime`` (or the processes that do).

``InProcessExecutor`` calls the runtime on threads of the server process (``BATCH_WORKERS=0``);
``scorer_core.execution.workers.pool.WorkerPool`` sends batches to worker processes. Both take a
list of tasks and return one outcome per task, and both hand the server the model's facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from scorer_core.config.plugins import Plugins
from scorer_core.config.settings import Settings
from scorer_core.config.shapley import ShapleyPolicy
from scorer_core.errors import ModelError, ScorerError
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.isolation import BatchReport, Settle, run_batch
from scorer_core.execution.scoring import ScoringTask
from scorer_core.execution.threads import default_library_threads, limit_library_threads
from scorer_core.runtime import Runtime

__all__ = ["Executor", "InProcessExecutor", "load_runtime", "start_executor", "worker_count"]

log = logging.getLogger(__name__)


class Executor(Protocol):
    """Runs batches of scoring tasks for one loaded model."""

    #: What the server needs to know about the model.
    facts: ModelFacts
    #: Model calls that can run at once; the batcher keeps this many batches in flight.
    concurrency: int

    @property
    def restarts(self) -> int:
        """Worker processes replaced after one died or was killed (0 where none run)."""
        ...

    @property
    def workers(self) -> list[tuple[int, int]]:
        """(index, pid) of each worker process, the index kept by its replacements ([] where none)."""
        ...

    async def __call__(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        """Score ``tasks`` (merged into one call where they can be); one outcome per task, and
        each success told to ``settle`` as soon as it is known."""
        ...

    async def close(self) -> None:
        """Release the model: its threads, processes, JVM or GPU context."""
        ...

    def oldest_call_age(self) -> float:
        """Seconds the longest-running model call has run so far (0 when none runs)."""
        ...

    def unavailable(self) -> str | None:
        """Why no model call can be taken now (every worker dead or restarting), or None."""
        ...

    def broken(self) -> str | None:
        """Why only restarting the server can bring scoring back (replacements failed), or None."""
        ...


def load_runtime(runtime_cls: type[Runtime], path: Path, settings: Settings) -> tuple[Runtime, ModelFacts]:
    """Instantiate and load a runtime; failures name the runtime and the path."""
    started = time.perf_counter()
    runtime = runtime_cls()
    try:
        runtime.load(path)
    except ScorerError:
        raise
    except Exception as exc:
        raise ModelError(
            f"Runtime '{runtime_cls.name}' failed to load '{path}': {type(exc).__name__}: {exc}",
            runtime=runtime_cls.name,
        ) from exc
    _verify_contributions(runtime, settings)
    facts = ModelFacts.of(runtime, path, settings)
    log.info(
        "Loaded '%s' with runtime '%s' in %.2f s: %d inputs, %d outputs, capabilities %s",
        path,
        runtime_cls.name,
        time.perf_counter() - started,
        len(facts.schema.inputs),
        len(facts.schema.outputs),
        facts.wire_capabilities,
    )
    return runtime, facts


def _verify_contributions(runtime: Runtime, settings: Settings) -> None:
    """Let the runtime check the enabled Shapley types; drop those that fail from its capabilities."""
    enabled = ShapleyPolicy.from_settings(settings.shapley_enable, settings.shapley_types_enabled).enabled
    wanted = frozenset(enabled & runtime.capabilities.contributions)
    if not wanted:
        return
    failed = wanted - frozenset(runtime.verify_contributions(wanted))
    if failed:
        runtime.capabilities = dataclasses.replace(
            runtime.capabilities, contributions=runtime.capabilities.contributions - failed
        )


class InProcessExecutor:
    """Runs batches on ``threads`` threads of the server process (``BATCH_WORKERS=0``).

    A runtime with ``thread_safe = False`` gets one call at a time whatever ``threads`` says.
    """

    def __init__(self, runtime: Runtime, facts: ModelFacts, threads: int, library_threads: int = 1) -> None:
        self._runtime = runtime
        self.facts = facts
        self.concurrency = threads if runtime.thread_safe else 1
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix="scorer-model",
            initializer=limit_library_threads,
            initargs=(library_threads,),
        )
        #: When each model call now running started (time.monotonic()), by call.
        self._started: dict[int, float] = {}

    @property
    def restarts(self) -> int:
        return 0  # a crash here ends the server: nothing is restarted

    @property
    def workers(self) -> list[tuple[int, int]]:
        return []

    def _run(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        key = id(tasks)
        self._started[key] = time.monotonic()
        try:
            return run_batch(self._runtime, tasks, settle=settle)
        finally:
            self._started.pop(key, None)

    def oldest_call_age(self) -> float:
        # A thread cannot be killed: a call stuck in the model is reported, so that /healthz
        # can fail and an orchestrator restart the process.
        started = list(self._started.values())
        return time.monotonic() - min(started) if started else 0.0

    async def __call__(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, tasks, settle)

    def unavailable(self) -> str | None:
        return None  # a stuck call is told by oldest_call_age

    def broken(self) -> str | None:
        return None

    async def close(self) -> None:
        if self._started:
            # A call still running after the server drained is stuck: waiting for it would block
            # shutdown forever, and closing the runtime under it could crash it.
            log.warning("A model call is still running after %.0f s; leaving it", self.oldest_call_age())
            self._pool.shutdown(wait=False, cancel_futures=True)
            return
        # In a thread: a runtime's close may take its time, and the server may still be serving
        # (a replaced model is closed while the new one serves).
        await asyncio.to_thread(self._close_now)

    def _close_now(self) -> None:
        self._pool.shutdown(wait=True)
        try:
            self._runtime.close()
        except Exception:
            log.exception("Runtime '%s' failed to close", self.facts.runtime)


def worker_count(runtime_cls: type[Runtime], settings: Settings) -> int:
    """The worker processes the model runs in: ``BATCH_WORKERS``, else the runtime's preference
    (0: in the server process)."""
    if settings.batch_workers is None:
        return runtime_cls.preferred_batch_workers
    return settings.batch_workers


def start_executor(
    plugins: Plugins,
    runtime_name: str,
    path: Path,
    settings: Settings,
    *,
    on_starting: Callable[[Executor], None] | None = None,
) -> Executor:
    """Load the model where ``BATCH_WORKERS`` (or the runtime's preference) says, ready to score.

    ``on_starting`` receives a worker pool before its processes load the model, so that a
    shutdown during a long load can stop them.
    """
    runtime_cls = plugins.runtime_to_load(path, runtime_name)
    workers = worker_count(runtime_cls, settings)
    if workers:
        from scorer_core.execution.workers.pool import WorkerPool

        log.info("Model calls run in %d worker processes", workers)
        preload = [runtime_cls.__module__]
        try:
            if settings.worker_forkserver:  # reading them costs the server something
                preload += runtime_cls.preload_modules(path)
        except Exception:  # a speed-up only: the workers import what they need either way
            log.warning("Runtime '%s' failed to name its modules to preload", runtime_cls.name, exc_info=True)
        pool = WorkerPool(settings, path, runtime_cls.name, workers, preload)
        if on_starting is not None:
            on_starting(pool)
        pool.start()
        return pool
    log.info(
        "Model calls run in the server process: a crash in the model's native code (a segmentation "
        "fault) ends the server, with 'Fatal Python error' and the model call's stack in this log; "
        "BATCH_WORKERS=1 or more runs the model in worker processes, where a crash ends only the "
        "worker, which is replaced"
    )
    # Such a crash raises no Python exception and runs no logging: the fault handler, in C, is
    # what can still write the signal and the stack of the call that caused it. (A host whose
    # stderr is no file, such as a test's capture, keeps its own arrangements.)
    with contextlib.suppress(AttributeError, ValueError, RuntimeError, OSError):
        faulthandler.enable(all_threads=False)
    runtime, facts = load_runtime(runtime_cls, path, settings)
    library_threads = settings.model_library_threads
    if library_threads is None:
        library_threads = default_library_threads(workers=0)
    return InProcessExecutor(runtime, facts, settings.model_threads, library_threads)
