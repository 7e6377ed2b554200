"""WorkerPool: starts ``BATCH_WORKERS`` worker processes, feeds them batches, replaces dead ones.

Each worker has its own Unix socket and carries one batch at a time. A worker that dies (a
crashing native library, the OOM killer, ``kill -9``) is replaced in the background while the
others keep serving. It fails only the request that killed it: when it was scoring a merged batch,
the batch's unanswered requests are scored apart, each alone, so that only one that crashes a
worker by itself gets the 500 (``WorkerCrash``); the batcher paces that answer by the restart it
cost (``scorer_core.execution.failures``). A request alone can crash the worker it runs on, so
those calls wait until another worker would be left serving: a crash then never takes the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from scorer_core.errors import ConfigurationError, ModelError, ScorerError, ScoringTimeout
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.isolation import BatchReport, Outcome, Settle, WorkerCrash
from scorer_core.execution.merging import Batch
from scorer_core.execution.scoring import ScoringTask
from scorer_core.execution.threads import default_library_threads
from scorer_core.execution.workers.forkserver import ChildProcess, ForkedProcess, Forkserver
from scorer_core.execution.workers.messages import (
    Failed,
    Load,
    Ready,
    Score,
    Settled,
    Stop,
    UnexpectedMessage,
    receive_from_worker,
    send,
)

__all__ = ["SHARED_FORKSERVERS", "SharedForkservers", "WorkerPool", "socket_directory"]

log = logging.getLogger(__name__)

#: Seconds a worker may take to load the model and say hello.
WORKER_START_TIMEOUT = 600.0
#: How often idle workers are checked for having died.
_WATCH_SECONDS = 0.5
#: A request with less time left than this is not scored apart after a crash: 504 at once.
_TOO_LATE = 0.05
#: The longest path a Unix socket can be bound at: Linux's ``sun_path`` holds 108 bytes, with a NUL.
SOCKET_PATH_MAX = 107
#: The longest name a worker's socket can have in its directory (ids count up with each restart).
_LONGEST_SOCKET_NAME = f"worker-{2**64}.sock"
#: What a worker process runs (``python -m``).
WORKER_MODULE = "scorer_core.execution.workers.worker"
#: Where the sockets go when the temporary directory is too deep for them.
SHORT_SOCKET_PARENT = "/tmp"


def socket_directory(fallback: str = SHORT_SOCKET_PARENT) -> Path:
    """A new private directory (mode 0700) for the workers' sockets, in the temporary directory
    (``TMPDIR``), or in ``fallback`` when a socket's path there would be too long to bind.

    A deep ``TMPDIR`` (a CI job's work tree, a container's volume) made every worker start fail with
    "AF_UNIX path too long", which says nothing about the setting to blame. A
    ``ConfigurationError`` says it, when not even ``fallback`` can hold the sockets.
    """
    preferred = Path(tempfile.mkdtemp(prefix="scorer-workers-"))
    if _fits_sockets(preferred):
        return preferred
    preferred.rmdir()
    try:
        short = Path(tempfile.mkdtemp(prefix="scorer-workers-", dir=fallback))
    except OSError as exc:
        problem = f"no directory could be made under {fallback} ({exc.strerror or exc})"
    else:
        if _fits_sockets(short):
            log.info("TMPDIR is too deep for the workers' sockets; they are in %s", short)
            return short
        short.rmdir()
        problem = f"{fallback} is too deep as well"
    raise ConfigurationError(
        f"The worker processes' Unix sockets need a path of at most {SOCKET_PATH_MAX} bytes, and the "
        f"temporary directory {preferred.parent} is too deep for them; {problem}. Set TMPDIR to a "
        "shorter directory"
    )


def _fits_sockets(directory: Path) -> bool:
    return len(os.fsencode(directory / _LONGEST_SOCKET_NAME)) <= SOCKET_PATH_MAX


#: What makes two pools' forkservers one: the modules they preload, and the environment.
_ForkserverKey = tuple[tuple[str, ...], frozenset[tuple[str, str]]]


class SharedForkservers:
    """The forkservers of the live pools, one for each list of modules and environment.

    A pool that would preload what another one does forks its workers from that one's forkserver:
    a model replaced by another of its family (the next version of an MLflow scikit-learn model)
    gets its workers without importing anything again, while the pool it replaces still serves.
    A forkserver is closed when the last pool using it has closed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: dict[_ForkserverKey, Forkserver] = {}
        #: Each live forkserver's key and the pools using it.
        self._users: dict[Forkserver, tuple[_ForkserverKey, int]] = {}

    def acquire(self, preload: Sequence[str], environment: dict[str, str]) -> Forkserver:
        key = (tuple(preload), frozenset(environment.items()))
        with self._lock:
            forkserver = self._shared.get(key)
            if forkserver is None:
                forkserver = self._shared[key] = Forkserver(preload, environment)
            _, users = self._users.get(forkserver, (key, 0))
            self._users[forkserver] = (key, users + 1)
            return forkserver

    def release(self, forkserver: Forkserver) -> None:
        with self._lock:
            key, users = self._users.pop(forkserver)
            if users > 1:
                self._users[forkserver] = (key, users - 1)
                return
            del self._shared[key]
        forkserver.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._users)


#: Shared by every pool of this process (a server runs one, and two during a replacement).
SHARED_FORKSERVERS = SharedForkservers()


def has_exited(process: ChildProcess) -> bool:
    """Whether ``process`` has ended, without reaping it.

    A forked worker is watched through its pidfd alone (``ForkedProcess.exited``): the probes ask
    this on the event loop, which must not wait for the forkserver to send an exit code. For a
    ``Popen``, not ``Popen.poll()``: that answers None, as for a live process, whenever
    another thread holds the ``Popen``'s wait lock (CPython's ``_internal_poll``), and the watch
    thread, readiness and the IPC threads all ask about the same workers at once. ``waitid`` with
    ``WNOWAIT`` asks the kernel and leaves the exit status for ``Popen.wait`` to collect. A process
    is waitable only once its last thread has exited, so its socket is closed by then.
    """
    if process.returncode is not None:
        return True
    if isinstance(process, ForkedProcess):
        return process.exited()
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped meanwhile, by Popen's own wait in another thread
        return True


@dataclass(eq=False)
class _Worker:
    process: ChildProcess
    connection: socket.socket
    #: Its index among the pool's ``count`` workers; a replacement takes its predecessor's, so
    #: that per-worker metrics keep their series across restarts.
    index: int = 0
    #: Set once its death has been handled, so that it is replaced once, whoever sees it first.
    replaced: bool = False
    #: Taken off the idle queue by a batch: its death is that batch's to handle, and its socket
    #: that batch's to use; the watch leaves it alone.
    busy: bool = False

    def exited(self) -> bool:
        return has_exited(self.process)

    def describe_exit(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if isinstance(self.process, ForkedProcess) and self.process.status_lost:
            return "its exit status lost with the forkserver it was forked from, which died"
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


class _Unread(Exception):
    """The worker died with the batch unread in its socket: the batch was never in flight there."""


class _Died(Exception):
    """The worker carrying a batch died before it answered: which one, and how it ended."""

    def __init__(self, pid: int, how: str) -> None:
        super().__init__(pid, how)
        self.pid = pid
        self.how = how


class WorkerPool:
    """``count`` worker processes serving one model: an ``Executor``.

    Each worker loads the plugins and the model itself, as the server would (so plugins that wrap
    the runtime apply there too), and sends back the model's facts.

    The fields below the lock are shared by the event loop, the IPC threads, the watch thread and
    the restart threads: each is read and written under it.
    """

    facts: ModelFacts

    def __init__(
        self, settings: Settings, model_path: Path, runtime: str, count: int, preload: Sequence[str] = ()
    ) -> None:
        """``preload``: what loading the model imports (``Runtime.preload_modules``), imported once
        by the process the workers are forked from (``SCORER_WORKER_FORKSERVER``)."""
        if settings.model_library_threads is None:  # the workers' share, known here (execution.threads)
            settings = settings.model_copy(update={"model_library_threads": default_library_threads(count)})
        self.settings = settings
        self.model_path = model_path
        self.runtime = runtime
        self.concurrency = count
        self._dir = socket_directory()
        # PYTHONSAFEPATH: `python -m` would put the working directory first on sys.path, where
        # a stray module could shadow a library or a plugin in workers only.
        self._environment = {**os.environ, "PYTHONSAFEPATH": "1"}
        self._forkserver = (
            SHARED_FORKSERVERS.acquire([WORKER_MODULE, *preload], self._environment)
            if settings.worker_forkserver
            else None
        )
        self._ids = itertools.count()
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        #: Notified when a worker is registered or a replacement ends (see _wait_for_spare).
        self._changed = threading.Condition(self._lock)
        self._threads = ThreadPoolExecutor(max_workers=count, thread_name_prefix="scorer-ipc")
        self._closed = False
        #: Processes started and not yet registered or given up on, so that a shutdown during
        #: start-up or a replacement leaves none behind; bounded by ``count``, whatever the restarts.
        self._spawned: set[ChildProcess] = set()
        #: Workers replaced (after one died or was killed) and ready again.
        self._restarts = 0
        #: Replacements under way, and whether one was given up after every attempt failed.
        self._replacing = 0
        self._gave_up = False
        #: Seconds the last worker took from its start to ready: what a crash costs the pool.
        self.start_seconds = 0.0

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return sorted(w.process.pid for w in self._all)

    @property
    def workers(self) -> list[tuple[int, int]]:
        """(index, pid) of each registered worker process, alive or not yet found dead."""
        with self._lock:
            return sorted((w.index, w.process.pid) for w in self._all)

    @property
    def restarts(self) -> int:
        with self._lock:
            return self._restarts

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def start(self) -> ModelFacts:
        """Start every worker (they load in parallel) and wait for all; the model's facts."""
        started = time.monotonic()
        pending: list[tuple[socket.socket, ChildProcess]] = []
        facts: ModelFacts | None = None
        try:
            for _ in range(self.concurrency):
                pending.append(self._spawn())
            for index, (listener, process) in enumerate(pending):
                worker, facts = self._handshake(listener, process)
                worker.index = index
                if not self._register(worker):
                    raise ModelError("the server is shutting down", runtime=self.runtime)
            with self._lock:
                self.start_seconds = time.monotonic() - started
        except BaseException:
            for listener, process in pending:
                listener.close()  # those not handshaken yet; closing twice does nothing
                process.kill()
            self._shutdown()
            raise
        assert facts is not None
        self.facts = facts
        log.info("%d worker processes ready: pids %s", self.concurrency, self.pids)
        threading.Thread(target=self._watch, name="scorer-worker-watch", daemon=True).start()
        return facts

    def _watch(self) -> None:
        """Replace a worker that died while idle as soon as it dies, not when the next batch finds
        it: until then the pool is a worker short, and readiness must know."""
        while True:
            with self._changed:  # a close wakes it at once: a closed pool leaves no thread behind
                if self._changed.wait_for(lambda: self._closed, _WATCH_SECONDS):
                    return
                dead = [w for w in self._all if not w.busy and w.exited()]
            for worker in dead:
                log.error("Worker process %d died (%s)", worker.process.pid, worker.describe_exit())
                self._replace(worker)

    def unavailable(self) -> str | None:
        with self._lock:
            live = sum(1 for w in self._all if not w.exited())
            replacing, gave_up, closed = self._replacing, self._gave_up, self._closed
        if live or closed:
            return None
        if gave_up and not replacing:
            return "no worker process is alive, and replacing them failed"
        return f"no worker process can take work ({replacing} of {self.concurrency} being replaced)"

    def broken(self) -> str | None:
        with self._lock:
            live = any(not w.exited() for w in self._all)
            replacing, gave_up, closed = self._replacing, self._gave_up, self._closed
        if not live and not replacing and gave_up and not closed:
            return "every worker process died and starting replacements failed; restart the server"
        return None

    def _spawn(self) -> tuple[socket.socket, ChildProcess]:
        path = self._dir / f"worker-{next(self._ids)}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", WORKER_MODULE, "--socket", str(path), "--server", str(os.getpid())]
        try:
            listener.bind(str(path))
            listener.listen(1)
            process: ChildProcess | None = None
            forkserver = self._forkserver  # None once the pool has closed
            if forkserver is not None:  # its output is this process's, as a Popen child's
                try:
                    process = forkserver.spawn(command, self._environment, 1, 2)
                except (OSError, RuntimeError) as exc:  # it died just now, say: this one starts afresh
                    log.warning("Could not fork a worker process (%s); starting it afresh", exc)
            if process is None:
                process = subprocess.Popen(command, env=self._environment)
        except BaseException:
            listener.close()
            raise
        with self._lock:
            self._spawned.add(process)
        return listener, process

    def _handshake(self, listener: socket.socket, process: ChildProcess) -> tuple[_Worker, ModelFacts]:
        """Send the worker what to load and wait for its hello; a worker that fails is ended and
        forgotten, so that failed replacements leave nothing behind."""
        try:
            return self._hello(listener, process)
        except BaseException:
            process.kill()
            process.wait()
            with self._lock:
                self._spawned.discard(process)
            raise

    def _hello(self, listener: socket.socket, process: ChildProcess) -> tuple[_Worker, ModelFacts]:
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
        try:
            return self._greet(connection, process)
        except BaseException:
            connection.close()  # the worker is ended, and only a registered one keeps its socket
            raise

    def _greet(self, connection: socket.socket, process: ChildProcess) -> tuple[_Worker, ModelFacts]:
        """Tell the worker connected on ``connection`` what to load; its facts once it has."""
        connection.settimeout(None)
        try:
            send(connection, Load(self.settings, self.model_path, self.runtime))
            hello = receive_from_worker(connection)
        except OSError:
            raise ModelError(
                f"worker process {process.pid} died while loading the model", runtime=self.runtime
            ) from None
        if isinstance(hello, Failed):
            process.wait(timeout=30)
            if isinstance(hello.error, ConfigurationError):
                raise hello.error  # as the model would have said it in this process
            raise ModelError(
                f"a worker process failed to load the model: {hello.error}", runtime=self.runtime
            )
        if not isinstance(hello, Ready):
            process.kill()
            raise ModelError(
                f"worker process {process.pid} sent {type(hello).__name__} instead of saying it was ready",
                runtime=self.runtime,
            )
        return _Worker(process, connection), hello.facts

    def _register(self, worker: _Worker) -> bool:
        """Make ``worker`` take batches; False, and the worker ended, once the pool has closed: the
        closing has already stopped the workers it knew of, and would never stop this one."""
        with self._changed:
            self._spawned.discard(worker.process)
            closed = self._closed
            if closed:
                worker.process.kill()
            else:
                self._all.add(worker)
                self._changed.notify_all()
        if closed:
            worker.connection.close()
            worker.process.wait()
            return False
        self._idle.put(worker)
        return True

    def _take_live_worker(self, message: Score, until: float | None) -> _Worker:
        """An idle worker that accepted the batch; workers found dead before that are replaced.

        ``ScoringTimeout``, with the batch sent nowhere, once less than ``_TOO_LATE`` is left before
        ``until`` (``time.monotonic()``): a worker given a batch whose time ran out while it waited
        (for a replacement to load, or a busy spare) would be killed as hung for time it never had.
        """
        while True:
            wait = None if until is None else max(until - _TOO_LATE - time.monotonic(), 0.0)
            try:
                worker = self._idle.get(timeout=wait)
            except queue.Empty:
                raise ScoringTimeout(
                    f"the request was not scored within {self.settings.request_timeout:g} s "
                    "(SCORER_REQUEST_TIMEOUT): no worker process was free in time"
                ) from None
            if worker is None:
                self._idle.put(None)  # let the other waiting threads see the pool is closing
                raise ModelError("the server is shutting down", runtime=self.runtime)
            with self._lock:  # from now on its death is this batch's to handle, not the watch's
                worker.busy = True
            if not worker.exited():
                try:
                    send(worker.connection, message)
                    return worker
                except OSError:
                    pass  # it died while idle: this batch was never in flight there
            if not worker.replaced:  # else the watch has seen it first
                how = worker.describe_exit()
                log.error("Worker process %d died while idle (%s)", worker.process.pid, how)
            self._replace(worker)

    def _call(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        known: dict[int, Outcome] = {}

        def tell(pairs: Sequence[tuple[int, Outcome]]) -> None:
            known.update(pairs)
            settle(pairs)

        try:
            return self._send(tasks, tell)
        except _Died as died:
            return self._after_crash(tasks, known, settle, died)

    def _send(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        """Score ``tasks`` merged on one worker; ``_Died`` if the worker dies before its report.

        A worker that died with the batch still unread passes it on to the next live one: it was
        never in flight there, so it is no crash of its requests.
        """
        # One merged frame per batch: pickling one array per column, not one per column per request.
        batch = Batch(tuple(tasks))
        merged = batch.merged()
        message = Score(merged, batch.offsets, batch.deadlines)
        # No request of this batch can use an answer later than its latest deadline, so a worker
        # still busy then is hung: it is killed and replaced, and its replacement the next batch.
        kill_at = merged.deadline or time.monotonic() + self.settings.request_timeout
        while True:
            worker = self._take_live_worker(message, merged.deadline)
            try:
                return self._collect(worker, settle, kill_at)
            except _Unread:
                continue

    def _collect(self, worker: _Worker, settle: Settle, kill_at: float) -> BatchReport:
        """The report of the batch just sent to ``worker``; ``_Unread`` if it died before reading
        the batch, ``_Died`` if after."""
        heard = False
        try:
            while True:
                worker.connection.settimeout(max(kill_at - time.monotonic(), 0.001))
                message = receive_from_worker(worker.connection)
                if isinstance(message, BatchReport):
                    break
                if not isinstance(message, Settled):
                    worker.process.kill()  # out of turn: nothing it says can be trusted now
                    raise UnexpectedMessage(f"worker sent {type(message).__name__} while scoring")
                heard = True
                settle(message.pairs)  # answers known before the batch is done
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
            if self.closed:
                raise ModelError("the server is shutting down", runtime=self.runtime) from exc
            how = worker.describe_exit()
            # A SIGKILL ends a process thread by thread: its socket takes a batch until the last
            # one has gone (though /proc shows it a zombie already). Linux then resets the
            # connection, since the batch was left unread: the worker never began scoring it.
            unread = isinstance(exc, ConnectionResetError) and not heard
            if unread:
                log.error(
                    "Worker process %d died (%s) before it read its batch; sending the batch to another",
                    worker.process.pid,
                    how,
                )
            self._replace(worker)
            if unread:
                raise _Unread from exc
            raise _Died(worker.process.pid, how) from exc
        self._idle_again(worker)
        return message

    def _idle_again(self, worker: _Worker) -> None:
        with self._lock:
            worker.busy = False
        self._idle.put(worker)

    def _after_crash(
        self, tasks: Sequence[ScoringTask], known: dict[int, Outcome], settle: Settle, died: _Died
    ) -> BatchReport:
        """The outcomes of a batch whose worker died: those it answered first, and for the others,
        each scored alone, so that only a request that crashes a worker by itself fails.

        Each culprit is charged a worker start (``restart_seconds``) for every crash it is the
        cause of: the merged call's, and its own alone. Nothing is remembered past this batch.
        """
        outcomes = dict(known)
        with self._lock:
            start_seconds = self.start_seconds
        suspects = [i for i in range(len(tasks)) if i not in known]
        if len(suspects) == 1:  # the only request the worker was still scoring killed it
            outcomes[suspects[0]] = self._crash(died, alone=False)
            return BatchReport([outcomes[i] for i in range(len(tasks))], restart_seconds=start_seconds)
        log.warning(
            "Worker process %d died (%s) while scoring %d requests merged; scoring them apart",
            died.pid,
            died.how,
            len(suspects),
        )
        crashes, calls = 1, list[tuple[float, int]]()
        for index in suspects:
            outcome: Outcome
            try:
                # A call takes at least as long as the fastest one so far: sent with less time
                # left, it would only get its worker killed as hung.
                report = self._alone(tasks[index], min((t for t, _ in calls), default=0.0))
                outcome = report.outcomes[0]
                calls.extend(report.calls)
            except _Died as again:
                crashes += 1
                outcome = self._crash(again, alone=True)
            except ScorerError as exc:  # its deadline passed, or the server is stopping
                outcome = exc
            outcomes[index] = outcome
            if not isinstance(outcome, ModelError):  # answered now; failures are the batcher's to pace
                settle([(index, outcome)])
        culprits = sum(isinstance(o, WorkerCrash) for o in outcomes.values())
        return BatchReport(
            [outcomes[i] for i in range(len(tasks))],
            isolation_seconds=sum(seconds for seconds, _ in calls),
            calls=tuple(calls),
            restart_seconds=crashes * start_seconds if culprits else 0.0,
        )

    def _alone(self, task: ScoringTask, takes: float) -> BatchReport:
        """Score one request of a batch that crashed a worker, on a worker whose death would leave
        another serving, if it has time left for a call that ``takes`` seconds."""
        margin = _TOO_LATE + takes
        if not self._wait_for_spare(None if task.deadline is None else task.deadline - margin):
            raise ScoringTimeout(
                "the request's time (SCORER_REQUEST_TIMEOUT) ran out while the requests merged with it "
                "were scored apart, after one of them crashed the model's worker process; retry it"
            )
        return self._send([task], lambda pairs: None)  # a batch of one: its outcome is in the report

    def _wait_for_spare(self, until: float | None) -> bool:
        """Wait until a call that crashes its worker would leave another worker serving (or no more
        workers are coming); False if ``until`` (``time.monotonic()``) passed first."""

        def spare() -> bool:
            live = sum(1 for w in self._all if not w.exited())
            return self._closed or live >= 2 or (live == 1 and not self._replacing)

        with self._changed:
            if until is None:
                return self._changed.wait_for(spare)
            return until > time.monotonic() and self._changed.wait_for(spare, until - time.monotonic())

    def _crash(self, died: _Died, *, alone: bool) -> WorkerCrash:
        how = " on its own" if alone else ""
        return WorkerCrash(
            f"worker process {died.pid} died while scoring this request{how} ({died.how}); it is being "
            "replaced",
            runtime=self.runtime,
        )

    async def __call__(self, tasks: Sequence[ScoringTask], settle: Settle) -> BatchReport:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._call, tasks, settle)

    def _replace(self, dead: _Worker) -> None:
        with self._changed:
            if dead.replaced:
                return
            dead.replaced = True
            self._all.discard(dead)
            self._replacing += 1
            self._changed.notify_all()
        dead.connection.close()
        log.error("Worker process %d died; starting a replacement", dead.process.pid)
        threading.Thread(
            target=self._restart, args=(dead.index,), name="scorer-worker-restart", daemon=True
        ).start()

    def _restart(self, index: int) -> None:
        try:
            for delay in (0.0, *self.settings.restart_backoff):
                with self._changed:  # the back-off ends early, and the restart with it, at a close
                    if self._changed.wait_for(lambda: self._closed, delay):
                        return
                started = time.monotonic()
                try:
                    worker, _ = self._handshake(*self._spawn())
                    worker.index = index
                except Exception as exc:  # a plugin or the model that fails to load: tried again
                    log.error("Replacement worker failed to start: %s", exc)
                    continue
                with self._lock:
                    self.start_seconds = time.monotonic() - started
                if not self._register(worker):
                    return
                with self._lock:
                    self._restarts += 1
                log.info("Replacement worker process %d ready", worker.process.pid)
                return
            with self._lock:
                self._gave_up = True
            log.critical("Gave up replacing a worker process; serving with fewer workers")
        finally:
            with self._changed:
                self._replacing -= 1
                self._changed.notify_all()

    def oldest_call_age(self) -> float:
        return 0.0  # a worker past its deadline is killed, never left stuck

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        """Stop every worker: close its socket (it exits), then terminate what is left."""
        with self._changed:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._changed.notify_all()
            loading = list(self._spawned)
            # Released once, however many times the pool is shut down (a close during start-up).
            forkserver, self._forkserver = self._forkserver, None
        self._idle.put(None)
        for worker in workers:
            with contextlib.suppress(OSError):  # one that died meanwhile needs no telling
                send(worker.connection, Stop())
            worker.connection.close()
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        for process in loading:  # still loading, or replacements under way: not waited for
            if process.poll() is None:
                process.kill()
                process.wait()
        self._threads.shutdown(wait=False, cancel_futures=True)
        if forkserver is not None:  # after the workers: a forkserver's end ends its children
            SHARED_FORKSERVERS.release(forkserver)
        shutil.rmtree(self._dir, ignore_errors=True)
