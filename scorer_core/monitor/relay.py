"""``Relay``: the server's side of the export process, where every sink runs.

Shaping events and sending them is Python work: in a thread of the server it held the GIL the
event loop needs, and on the benchmark's single rows it cost a quarter of the throughput (the
server is bound by its GIL, not by its cores). So the sinks run in a process of their own
(``exporter``), started with the server, and the server keeps only what must be in it: a bounded
queue the event loop appends to without waiting, and one thread that hands batches of requests
over a socket, each request reduced to the few values an event is made from (a few microseconds
of pickling). Whatever the export process does (a slow broker, retries, a stalled receiver, a
crash) the server's event loop never waits on it: the queue fills, and requests are dropped and
counted. A process that dies is started again; the batch it held is sent again (at least once).

The export process reports its sinks' counts every half second; ``snapshots`` adds the requests
dropped here, for the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scorer_core.config.settings import Settings
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.workers.framing import recv_frame, send_frame
from scorer_core.monitor.events import EVENT_ROWS
from scorer_core.monitor.outbox import BATCH_REQUESTS, GATHER_SECONDS, Limits, Snapshot
from scorer_core.service.scored import ScoredRequest
from scorer_core.wire.cellrows import KEPT_ROWS, CellRows

__all__ = ["Record", "Relay", "record_of"]

log = logging.getLogger(__name__)

#: Seconds between two starts of the export process, after it died.
RESTART_PAUSE = 1.0
#: Seconds the export process has to start and report its sinks built.
START_TIMEOUT = 60.0

#: One request as the export process gets it: id, endpoint, received, seconds, finished, prefix,
#: status, error, headers (only those exported), facts key, rows (a ``Frame``, or a small
#: request's cells as sent), the inputs the cells were kept for (None: the model's), outputs and
#: contributions.
Record = tuple[Any, ...]


def record_of(scored: ScoredRequest, headers: Sequence[str], facts_key: int) -> Record:
    """``scored`` reduced to what its events are made of."""
    frame = scored.frame
    inputs = None
    if isinstance(frame, CellRows):
        if frame.inputs != scored.facts.schema.inputs or frame.missing_values != scored.facts.missing_values:
            inputs = (frame.inputs, frame.missing_values)
        rows: Any = frame.rows
    else:
        rows = frame
    sent = {name: scored.headers[name] for name in headers if name in scored.headers} if headers else {}
    return (
        scored.request_id,
        scored.endpoint,
        scored.received,
        scored.seconds,
        scored.finished,
        scored.prefix,
        scored.status,
        scored.error,
        sent,
        facts_key,
        rows,
        inputs,
        _compact(scored.outputs)
        if scored.outputs is not None and scored.num_rows <= KEPT_ROWS
        else scored.outputs,
        scored.contributions,
    )


def _compact(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A small answer's numeric columns as lists, which pickle in a tenth of an array's time;
    other columns (times, objects) as arrays, which events write as the answer does."""
    return {
        name: column.tolist() if column.dtype.kind in "biuf" else column for name, column in outputs.items()
    }


def scored_of(record: Record, facts: ModelFacts) -> ScoredRequest:
    """The request a record was made from (in the export process)."""
    (request_id, endpoint, received, seconds, finished, prefix, status, error, headers, _, rows, inputs,
     outputs, contributions) = record  # fmt: skip
    if isinstance(rows, list):
        kept_for, missing = inputs if inputs is not None else (facts.schema.inputs, facts.missing_values)
        frame: Any = CellRows(rows, tuple(kept_for), missing)
    else:
        frame = rows
    return ScoredRequest(
        request_id=request_id,
        endpoint=endpoint,
        received=received,
        seconds=seconds,
        finished=finished,
        facts=facts,
        headers=headers,
        prefix=prefix,
        status=status,
        error=error,
        frame=frame,
        outputs=outputs,
        contributions=contributions,
    )


def _events_of(scored: ScoredRequest) -> int:
    return max(1, -(-scored.num_rows // EVENT_ROWS))


class Relay:
    """The bounded queue in the server and the export process behind it."""

    def __init__(
        self, settings: Settings, sinks: Sequence[str], headers: Sequence[str], limits: Limits
    ) -> None:
        self._settings = settings
        self._sinks = tuple(sinks)
        self._headers = tuple(headers)
        self._limits = limits
        self._queue: deque[ScoredRequest] = deque()
        self._rows = 0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closing = False
        self._dropped = 0
        #: The export process's last report, by sink.
        self._reported: dict[str, Snapshot] = {name: Snapshot() for name in self._sinks}
        #: The counts of export processes that died and were replaced: counters never go back.
        self._retired: dict[str, Snapshot] = {name: Snapshot() for name in self._sinks}
        self._facts: dict[int, ModelFacts] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._listener: threading.Thread | None = None
        self._sender = threading.Thread(target=self._send_all, name="monitor-relay", daemon=True)
        self._done = threading.Event()

    # The event loop's side.

    def offer(self, scored: ScoredRequest) -> None:
        """Queue ``scored``, or drop and count it when the queue is full; never waits."""
        rows = scored.num_rows
        with self._lock:
            queue = self._queue
            full = len(queue) >= self._limits.requests or (queue and self._rows + rows > self._limits.rows)
            if full or self._closing:
                self._dropped += _events_of(scored)
                return
            queue.append(scored)
            self._rows += rows
            if len(queue) == 1 or len(queue) == BATCH_REQUESTS:
                self._ready.notify()

    def snapshots(self) -> dict[str, Snapshot]:
        """Each sink's counts: the export process's, plus what was dropped or waits here."""
        with self._lock:
            dropped, depth = self._dropped, len(self._queue)
        return {
            name: (self._retired[name] + snapshot).plus(dropped=dropped, depth=depth)
            for name, snapshot in self._reported.items()
        }

    # Start and stop.

    def start(self) -> None:
        self._sender.start()

    def close(self, timeout: float) -> None:
        """Send what waits, then have the export process flush its sinks within ``timeout``
        seconds; what is left then is counted as dropped."""
        ends = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            self._ready.notify()
        self._sender.join(max(0.0, ends - time.monotonic()))
        process, sock, listener = self._process, self._socket, self._listener
        if process is not None and sock is not None:
            with contextlib.suppress(OSError):
                send_frame(sock, ("close", max(0.0, ends - time.monotonic())))
            # The listener keeps the last report, sent after the flush, and ends when the export
            # process does: it is the socket's one reader.
            if listener is not None:
                listener.join(max(0.1, ends + 2 - time.monotonic()))
            _end(process, max(0.1, ends + 2 - time.monotonic()))
            sock.close()
        with self._lock:
            left = sum(_events_of(scored) for scored in self._queue)
            self._queue.clear()
            self._dropped += left
        if left:
            log.warning("Monitoring: %d events not handed to the export process before the stop", left)

    # The sender thread.

    def _send_all(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._hand_over(batch)

    def _take(self) -> list[ScoredRequest] | None:
        with self._lock:
            if not self._queue:
                if self._closing:
                    return None
                self._ready.wait(1.0)
                if not self._queue:
                    return None if self._closing else []
            if len(self._queue) < BATCH_REQUESTS and not self._closing:
                self._ready.wait(GATHER_SECONDS)
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_REQUESTS))]
            self._rows -= sum(scored.num_rows for scored in batch)
            return batch

    def _hand_over(self, batch: list[ScoredRequest]) -> None:
        """Send ``batch`` to the export process, starting it first if it is not running; a batch
        that cannot be sent after one restart is counted as dropped."""
        for attempt in range(2):
            try:
                sock = self._connected()
                for facts in {id(s.facts): s.facts for s in batch}.values():
                    if id(facts) not in self._facts:
                        send_frame(sock, ("facts", id(facts), facts))
                        self._facts[id(facts)] = facts  # held, so that its id is never reused
                send_frame(sock, ("batch", [record_of(s, self._headers, id(s.facts)) for s in batch]))
                return
            except (OSError, EOFError, RuntimeError) as exc:
                log.error("Monitoring: the export process failed (%s); starting it again", exc)
                self._stop_process()
                if attempt == 0:
                    time.sleep(RESTART_PAUSE)
        with self._lock:
            self._dropped += sum(_events_of(scored) for scored in batch)

    def _connected(self) -> socket.socket:
        if self._socket is not None and self._process is not None and self._process.poll() is None:
            return self._socket
        self._stop_process()
        for name, snapshot in self._reported.items():
            self._retired[name] = self._retired[name] + dataclasses.replace(snapshot, depth=0)
            self._reported[name] = Snapshot()
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "scorer_core.monitor.exporter", "--fd", str(theirs.fileno())]
        try:
            # PYTHONSAFEPATH: `python -m` would put the working directory first on sys.path.
            process = subprocess.Popen(
                command, pass_fds=(theirs.fileno(),), env={**os.environ, "PYTHONSAFEPATH": "1"}
            )
        finally:
            theirs.close()
        self._facts.clear()
        send_frame(ours, ("setup", self._settings))
        ours.settimeout(START_TIMEOUT)
        reply = recv_frame(ours)
        ours.settimeout(None)
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            process.kill()
            process.wait()
            ours.close()
            raise RuntimeError(f"the export process did not start: {reply!r}")
        self._process, self._socket = process, ours
        self._listener = threading.Thread(
            target=self._listen, args=(ours,), name="monitor-reports", daemon=True
        )
        self._listener.start()
        return ours

    def _listen(self, sock: socket.socket) -> None:
        """Keep the export process's reports until its last one, or until it goes away."""
        try:
            while True:
                message = recv_frame(sock)
                if isinstance(message, tuple) and message[0] == "stats":
                    self._reported.update(message[1])
                    if message[2]:  # the last report, after the flush
                        return
        except (OSError, EOFError, ConnectionError):
            return

    def _stop_process(self) -> None:
        process, sock, listener = self._process, self._socket, self._listener
        self._process = self._socket = self._listener = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes its listener, blocked in a read
            sock.close()
        if listener is not None:
            listener.join(1)  # its process's reports end here: none lands after the retirement
        if process is not None:
            _end(process, 5)


def _end(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
