"""WorkerPool: starts ``BATCH_WORKERS`` worker processes, feeds them batches, replaces dead ones.

Each worker has its own Unix socket and carries one batch at a time. A worker that dies (a
crashing native library, the OOM killer, ``kill -9``) fails only the batch it was scoring, with an
error that says so, and is replaced in the background; the others keep serving.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError, ModelError, ScoringTimeout
from scorer_core.execution.batch import Batch
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.isolation import BatchReport, Settle
from scorer_core.execution.scoring import ScoringTask
from scorer_core.execution.workers.protocol import recv_message, send_message

__all__ = ["WorkerPool"]

log = logging.getLogger(__name__)

#: Seconds a worker may take to load the model and say hello.
WORKER_START_TIMEOUT = 600.0
_RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
#: How often idle workers are checked for having died.
_WATCH_SECONDS = 0.5


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    connection: socket.socket
    #: Which of the pool's ``count`` places it fills; a replacement takes its predecessor's.
    slot: int = 0
    #: Set once its death has been handled, so that it is replaced once, whoever sees it first.
    replaced: bool = False

    def describe_exit(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


class WorkerPool:
    """``count`` worker processes serving one model: an ``Executor``.

    Each worker loads the plugins and the model itself, as the server would (so plugins that wrap
    the runtime apply there too), and sends back the model's facts.
    """

    facts: ModelFacts

    def __init__(self, settings: Settings, model_path: Path, runtime: str, count: int) -> None:
        self.settings = settings
        self.model_path = model_path
        self.runtime = runtime
        self.slots = count
        self._dir = Path(tempfile.mkdtemp(prefix="scorer-workers-"))
        self._ids = itertools.count()
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=count, thread_name_prefix="scorer-ipc")
        self._closed = False
        #: Every process started, so that a shutdown during start-up leaves none behind.
        self._spawned: list[subprocess.Popen[bytes]] = []
        #: Workers replaced (after one died or was killed) and ready again.
        self.restarts = 0
        #: Replacements under way, and whether one was given up after every attempt failed.
        self._replacing = 0
        self._gave_up = False

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return sorted(w.process.pid for w in self._all)

    @property
    def workers(self) -> list[tuple[int, int]]:
        """(slot, pid) of each registered worker process, alive or not yet found dead."""
        with self._lock:
            return sorted((w.slot, w.process.pid) for w in self._all)

    def start(self) -> ModelFacts:
        """Start every worker (they load in parallel) and wait for all; the model's facts."""
        pending = [self._spawn() for _ in range(self.slots)]
        facts: ModelFacts | None = None
        try:
            for slot, (listener, process) in enumerate(pending):
                worker, facts = self._handshake(listener, process)
                worker.slot = slot
                self._register(worker)
        except BaseException:
            for _, process in pending:
                process.kill()
            self._shutdown()
            raise
        assert facts is not None
        self.facts = facts
        log.info("%d worker processes ready: pids %s", self.slots, self.pids)
        threading.Thread(target=self._watch, name="scorer-worker-watch", daemon=True).start()
        return facts

    def _watch(self) -> None:
        """Replace a worker that died while idle as soon as it dies, not when the next batch finds
        it: until then the pool is a slot short, and readiness must know."""
        while not self._closed:
            time.sleep(_WATCH_SECONDS)
            with self._lock:
                dead = [w for w in self._all if w.process.poll() is not None]
            for worker in dead:
                log.error("Worker process %d died (%s)", worker.process.pid, worker.describe_exit())
                self._replace(worker)

    def unavailable(self) -> str | None:
        with self._lock:
            live = sum(1 for w in self._all if w.process.poll() is None)
            replacing = self._replacing
        if live or self._closed:
            return None
        if self._gave_up and not replacing:
            return "no worker process is alive, and replacing them failed"
        return f"no worker process can take work ({replacing} of {self.slots} being replaced)"

    def broken(self) -> str | None:
        with self._lock:
            live = any(w.process.poll() is None for w in self._all)
            replacing = self._replacing
        if not live and not replacing and self._gave_up and not self._closed:
            return "every worker process died and starting replacements failed; restart the server"
        return None

    def _spawn(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        path = self._dir / f"worker-{next(self._ids)}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        command = [
            sys.executable, "-m", "scorer_core.execution.workers.worker",
            "--socket", str(path), "--model", str(self.model_path), "--runtime", self.runtime,
        ]  # fmt: skip
        # PYTHONSAFEPATH: `python -m` would put the working directory first on sys.path, where a
        # stray module could shadow a library or a plugin in workers only.
        process = subprocess.Popen(command, env={**os.environ, "PYTHONSAFEPATH": "1"})
        self._spawned.append(process)
        return listener, process

    def _handshake(
        self, listener: socket.socket, process: subprocess.Popen[bytes]
    ) -> tuple[_Worker, ModelFacts]:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        listener.settimeout(0.5)
        try:
            while True:
                try:
                    connection, _ = listener.accept()
                    break
                except TimeoutError:
                    if process.poll() is not None:
                        raise ModelError(
                            f"worker process {process.pid} exited with code {process.returncode} before it "
                            "connected",
                            runtime=self.runtime,
                        ) from None
                    if time.monotonic() > deadline:
                        raise ModelError(
                            "a worker process did not start in time", runtime=self.runtime
                        ) from None
        finally:
            listener.close()
        connection.settimeout(None)
        try:
            status, payload = recv_message(connection)
        except ConnectionError:
            raise ModelError(
                f"worker process {process.pid} died while loading the model", runtime=self.runtime
            ) from None
        if status != "ready":
            process.wait(timeout=30)
            if isinstance(payload, ConfigurationError):
                raise payload  # as the model would have said it in this process
            raise ModelError(f"a worker process failed to load the model: {payload}", runtime=self.runtime)
        return _Worker(process, connection), payload

    def _register(self, worker: _Worker) -> None:
        with self._lock:
            self._all.add(worker)
        self._idle.put(worker)

    def _take_live_worker(self, message: tuple[ScoringTask, list[int], list[float | None]]) -> _Worker:
        """An idle worker that accepted the batch; workers found dead before that are replaced."""
        while True:
            worker = self._idle.get()
            if worker is None:
                self._idle.put(None)  # let the other waiting threads see the pool is closing
                raise ModelError("the server is shutting down", runtime=self.runtime)
            if worker.process.poll() is None:
                try:
                    send_message(worker.connection, message)
                    return worker
                except OSError:
                    pass  # it died while idle: this batch was never in flight there
            if not worker.replaced:  # else the watch has seen it first
                how = worker.describe_exit()
                log.error("Worker process %d died while idle (%s)", worker.process.pid, how)
            self._replace(worker)

    def _call(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        # One merged frame per batch: pickling one array per column, not one per column per request.
        batch = Batch(tuple(tasks))
        merged = batch.merged()
        worker = self._take_live_worker((merged, batch.offsets, batch.deadlines))
        # No request of this batch can use an answer later than its latest deadline, so a worker
        # still busy then is hung: it is killed and replaced, and the slot serves the next batch.
        kill_at = merged.deadline or time.monotonic() + self.settings.request_timeout
        try:
            while True:
                worker.connection.settimeout(max(kill_at - time.monotonic(), 0.001))
                message = recv_message(worker.connection)
                if isinstance(message, BatchReport):
                    break
                settle(message[1])  # ("settled", pairs): answers known before the batch is done
        except TimeoutError as exc:
            log.error(
                "Worker process %d did not answer within %g s (SCORER_REQUEST_TIMEOUT); killing it",
                worker.process.pid,
                self.settings.request_timeout,
            )
            worker.process.kill()
            self._replace(worker)
            raise ScoringTimeout(
                f"the model call took longer than {self.settings.request_timeout:g} s "
                f"(SCORER_REQUEST_TIMEOUT); worker process {worker.process.pid} was killed and is being "
                "replaced"
            ) from exc
        except (ConnectionError, OSError) as exc:
            if self._closed:
                raise ModelError("the server is shutting down", runtime=self.runtime) from exc
            how = worker.describe_exit()
            self._replace(worker)
            raise ModelError(
                f"worker process {worker.process.pid} died while scoring this request ({how}); it is being "
                "replaced",
                runtime=self.runtime,
            ) from exc
        self._idle.put(worker)
        return message

    async def __call__(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._call, tasks, settle)

    def _replace(self, dead: _Worker) -> None:
        with self._lock:
            if dead.replaced:
                return
            dead.replaced = True
            self._all.discard(dead)
            self._replacing += 1
        dead.connection.close()
        log.error("Worker process %d died; starting a replacement", dead.process.pid)
        threading.Thread(
            target=self._restart, args=(dead.slot,), name="scorer-worker-restart", daemon=True
        ).start()

    def _restart(self, slot: int) -> None:
        try:
            for delay in (0.0, *_RESTART_BACKOFF):
                if self._closed:
                    return
                time.sleep(delay)
                try:
                    worker, _ = self._handshake(*self._spawn())
                    worker.slot = slot
                except (ModelError, OSError) as exc:
                    log.error("Replacement worker failed to start: %s", exc)
                    continue
                self._register(worker)
                with self._lock:
                    self.restarts += 1
                log.info("Replacement worker process %d ready", worker.process.pid)
                return
            self._gave_up = True
            log.critical("Gave up replacing a worker process; serving with fewer workers")
        finally:
            with self._lock:
                self._replacing -= 1

    def oldest_call_age(self) -> float:
        return 0.0  # a worker past its deadline is killed, never left stuck

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        """Stop every worker: close its socket (it exits), then terminate what is left."""
        self._closed = True
        self._idle.put(None)
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.connection.close()
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        for process in self._spawned:  # still loading, or replacements under way: not waited for
            if process.poll() is None:
                process.kill()
                process.wait()
        self._threads.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self._dir, ignore_errors=True)
