"""``Relay``: the server's side of the export process, where every sink runs.

Shaping events and sending them is Python work: in a thread of the server it held the GIL the
event loop needs, and on the benchmark's single rows it cost a quarter of the throughput (the
server is bound by its GIL, not by its cores). So the sinks run in a process of their own
(``exporter``), started with the server, and the server keeps only what must be in it: a bounded
queue the event loop appends to without waiting, and one thread that hands batches of requests
over a socket, each request reduced to the few values an event is made from (a few microseconds
of pickling). Whatever the export process does (a slow broker, retries, a stalled receiver, a
crash) the server's event loop never waits on it: the queue fills, and requests are dropped and
counted. A process that dies is started again (backing off when it keeps dying); the batch being
handed over when that is found is sent again, and what the dead one held (its queues, its batch
in flight) is counted as dropped.

A small request (at most ``KEPT_ROWS`` rows, the single rows most traffic is) is made into its
record as JSON bytes when it is offered, on the event loop: about 1 us, 3 under load, when the
memory the record is read from has gone cold. An H2O score request's cells are not read for it at
all: its record carries its body, one object, and the export process reads the cells again from
that (``rows_of_score_body``); on a single row of 30 cells this took the record from 4.3 to 2.7 us
under load. Queued as they were, until the sending thread took them up to a
tenth of a second later, the requests' rows, headers and answers were thousands of objects a
second that outlived their requests: the garbage collector walked them again and again, they
took the cache from the requests being served, and the sending thread then spent 13 us a request
of the GIL making and pickling records from memory gone cold. Bytes are one object that no
collection walks, and the sending thread only frames them. Larger requests, and the few small
ones JSON cannot carry as they are (a model's own objects, contributions, cells kept for other
inputs), are queued as they are and pickled by the sending thread.

The export process reports its sinks' counts every half second; ``snapshots`` adds the requests
dropped here, for the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from scorer_core.config.settings import Settings
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.workers.framing import recv_frame, send_frame
from scorer_core.frame import Frame
from scorer_core.monitor.outbox import Snapshot
from scorer_core.monitor.queue import Limits, ScoredQueue, events_in
from scorer_core.runtime import Contributions
from scorer_core.service.scored import ScoredRequest
from scorer_core.wire.cellrows import KEPT_ROWS, CellRows
from scorer_core.wire.contract import ScoreRequest, parse_request

__all__ = ["Encoded", "Record", "Relay", "encoded_of", "record_of"]

log = logging.getLogger(__name__)

#: Seconds before the export process is started again after a start failed; doubled after each
#: failure, up to LONGEST_START_PAUSE (a process that cannot start must not cost scoring a Python
#: start every second).
RESTART_PAUSE = 1.0
LONGEST_START_PAUSE = 60.0
#: An export process that ends within this many seconds of its start counts as a failed start.
SHORT_LIFE = 10.0
#: Seconds the export process has to start and report its sinks built.
START_TIMEOUT = 60.0

#: One request as the export process gets it: id, endpoint, received, seconds, finished, prefix,
#: status, error, headers (only those exported), facts key, rows (a ``Frame``, or a small
#: request's cells as sent), the inputs the cells were kept for (None: the model's), outputs and
#: contributions.
Record = tuple[Any, ...]
#: Where a record holds the inputs its cells were kept for.
_KEPT_FOR = 11


#: Rows of a large request pickled at once: the rest follow in slices of this many, each sent
#: before the next is pickled, so that the GIL is let go between them. Pickling a million rows
#: with a text column at once held it for 220 ms, the event loop's whole turn.
SLICE_ROWS = 10_000


@dataclasses.dataclass(frozen=True)
class Sliced:
    """In a record, instead of its rows and outputs: they were sent ahead, in ``("rows", key,
    (frame, outputs))`` messages."""

    key: int


def slices_of(scored: ScoredRequest) -> list[tuple[Frame, dict[str, np.ndarray] | None]]:
    """A large typed request's rows and answer, in slices of ``SLICE_ROWS``."""
    frame, outputs = scored.frame, scored.outputs
    assert isinstance(frame, Frame)
    return [
        (
            frame.slice(start, start + SLICE_ROWS),
            {name: np.asarray(column)[start : start + SLICE_ROWS] for name, column in outputs.items()}
            if outputs is not None
            else None,
        )
        for start in range(0, frame.num_rows, SLICE_ROWS)
    ]


def record_of(
    scored: ScoredRequest, headers: Sequence[str], facts_key: int, sliced: Sliced | None = None
) -> Record:
    """``scored`` reduced to what its events are made of (its rows and answer sent ahead when
    ``sliced``)."""
    frame = scored.frame
    inputs = None
    if sliced is not None:
        rows: Any = sliced
    elif isinstance(frame, CellRows):
        if frame.inputs != scored.facts.schema.inputs or frame.missing_values != scored.facts.missing_values:
            inputs = (frame.inputs, frame.missing_values)
        rows = frame.rows
    else:
        rows = frame
    outputs = (
        None
        if sliced is not None
        else _compact(scored.outputs)
        if scored.outputs is not None and scored.num_rows <= KEPT_ROWS
        else scored.outputs
    )
    return _record(scored, headers, facts_key, rows, inputs, outputs, scored.contributions)


def _record(
    scored: ScoredRequest,
    headers: Sequence[str],
    facts_key: int,
    rows: Any,
    inputs: Any,
    outputs: Any,
    contributions: Contributions | None,
) -> Record:
    """The record's fields in the order ``scored_of`` reads them; the parts that differ between
    the pickled record and the encoded one given."""
    sent = {name: scored.headers[name] for name in headers if name in scored.headers} if headers else {}
    return (
        scored.request_id, scored.endpoint, scored.received, scored.seconds, scored.finished, scored.prefix,
        scored.status, scored.error, sent, facts_key, rows, inputs, outputs, contributions,
    )  # fmt: skip


#: A small request's record as JSON (``encoded_of``), as the relay's queue holds it: ``(data,
#: num_rows, facts_key, score_body)``; with a score body, the record's rows are None and the
#: export process reads them from the body. A plain tuple of atoms, which the collector stops
#: tracking at its first pass (a named tuple it would walk until it is freed).
Encoded = tuple[bytes, int, int, bytes | None]
#: Where a record holds its rows.
_ROWS = 10
#: The longest score body a record carries instead of its cells. The queue is bounded by
#: requests and rows, not bytes, and a longer body of few rows may be mostly fields the model
#: does not read (60 rows of 200 fields for a model of 5 inputs: 240 KiB against 6 KiB of
#: cells); the single rows this is for are well under a kilobyte or two.
SCORE_BODY_BYTES = 16 * 1024


def encoded_of(scored: ScoredRequest, headers: Sequence[str], facts_key: int) -> Encoded | None:
    """``scored``'s record as JSON bytes, or None when JSON would not give it back as it is: the
    record's parts are all JSON's own (strings, numbers, booleans, None, lists, and dicts keyed by
    strings) except the rows' ``inputs`` and the contributions, which JSON cannot carry, and
    answers of times or objects (arrays: ``_compact`` leaves them so), which orjson refuses.
    orjson also refuses an integer beyond 64 bits and a dict keyed by anything but strings. A
    number that is not finite (from a gRPC tensor, or an answer) is written as null, which is how
    every sink writes it in the event.

    On the event loop for every request monitored, so it makes no record first: an answer of
    numpy's own integers, booleans and doubles (most answers) is written by orjson from the
    arrays, which gives what ``tolist()`` would, without a list per column."""
    frame = scored.frame
    body = None
    if frame is None:
        rows: Any = None
        count = 0
    elif type(frame) is CellRows:
        facts = scored.facts
        if frame.inputs != facts.schema.inputs or frame.missing_values != facts.missing_values:
            return None  # kept for other inputs: Fields, which JSON cannot carry
        count = len(frame.rows)
        body = scored.score_body
        if body is not None and len(body) > SCORE_BODY_BYTES:
            body = None
        rows = frame.rows if body is None else None  # read from the body, in the export process
    else:
        return None
    if scored.contributions is not None:
        return None
    outputs = scored.outputs
    option = orjson.OPT_SERIALIZE_NUMPY
    if outputs is not None:
        for column in outputs.values():
            if column.dtype not in _AS_LISTS:
                outputs, option = _compact(outputs), 0
                break
    record = _record(scored, headers, facts_key, rows, None, outputs, None)
    try:
        return orjson.dumps(record, option=option), count, facts_key, body
    except TypeError:  # orjson.JSONEncodeError
        if option and outputs is not None:  # an array orjson takes only in C order: as lists
            try:
                compact = _record(scored, headers, facts_key, rows, None, _compact(outputs), None)
                return orjson.dumps(compact), count, facts_key, body
            except TypeError:
                return None
        return None


#: The answer columns orjson writes from the array as it would write the array's ``tolist()``:
#: numpy's integers and booleans, and doubles (shortest form, not finite as null). A float32
#: column is not one of them: orjson writes the float32's shortest form, ``tolist()`` the double.
_AS_LISTS = frozenset(
    np.dtype(name)
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float64")
)


#: A record as the sending thread hands it over: pickled (a tuple), JSON bytes, or JSON bytes
#: with the score body its rows are read from.
Handed = Record | bytes | tuple[bytes, bytes]


def _decoded(item: Handed, facts: ModelFacts) -> Record:
    """A record as the export process gets it: pickled (a tuple), or JSON bytes (a list, which
    unpacks as the tuple does), its rows read from its score body when it came with one."""
    if isinstance(item, bytes):
        decoded: Record = orjson.loads(item)
        return decoded
    if len(item) == 2:
        data, body = item
        record = orjson.loads(data)
        record[_ROWS] = rows_of_score_body(body, facts)
        return tuple(record)
    return item


def rows_of_score_body(body: bytes, facts: ModelFacts) -> list[Any]:
    """The cells the front kept (``CellRows.rows``) of an H2O score request it took, read again
    from its body: the same cells and the same choice of the model's inputs, in its order.

    The front checked this body already, so its fields and rows are taken as orjson reads them
    (what ``parse_request`` keeps of them), without the contract's checks again: they were a
    third of the export process's work. A body only the lenient parse reads (``NaN``) takes it.
    Only bodies the front read whole carry cells (``OFF_LOOP_BYTES`` is at most
    ``PARSE_CHUNK_BYTES``: a test holds it), so one whole parse here reads what it read."""
    try:
        data = orjson.loads(body)
        fields, rows = data["fields"], data["rows"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        request = parse_request(ScoreRequest, body)
        fields, rows = request.fields, request.rows
    return list(CellRows.of(fields, rows, facts.schema.inputs, facts.missing_values).rows)


def _compact(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A small answer's numeric columns as lists, which pickle in a tenth of an array's time;
    other columns (times, objects) as arrays, which events write as the answer does."""
    return {
        name: column.tolist() if column.dtype.kind in "biuf" else column for name, column in outputs.items()
    }


def scored_of(
    record: Handed,
    facts: ModelFacts,
    slices: dict[int, list[tuple[Frame, dict[str, np.ndarray] | None]]],
) -> ScoredRequest:
    """The request a record was made from (in the export process), pickled or encoded as JSON;
    ``slices``: the rows and answers sent ahead, by key, of which a ``Sliced`` record takes its
    own."""
    (request_id, endpoint, received, seconds, finished, prefix, status, error, headers, _, rows, inputs,
     outputs, contributions) = _decoded(record, facts)  # fmt: skip
    if isinstance(rows, Sliced):
        parts = slices.pop(rows.key)
        rows = Frame.concat([frame for frame, _ in parts])
        answers = [answer for _, answer in parts]
        if all(answer is not None for answer in answers):
            outputs = {
                name: np.concatenate([a[name] for a in answers if a is not None]) for name in answers[0] or {}
            }
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


class Relay:
    """The bounded queue in the server and the export process behind it."""

    def __init__(
        self, settings: Settings, sinks: Sequence[str], headers: Sequence[str], limits: Limits
    ) -> None:
        self._settings = settings
        self._sinks = tuple(sinks)
        self._headers = tuple(headers)
        self._limits = limits
        self._queue = ScoredQueue[ScoredRequest | Encoded](limits, rows_of=_rows_of)
        #: Guards the counts and the export process's handles below.
        self._lock = threading.Lock()
        self._dropped = 0
        #: The export process's last report, by sink.
        self._reported: dict[str, Snapshot] = {name: Snapshot() for name in self._sinks}
        #: The counts of export processes that died and were replaced: counters never go back.
        self._retired: dict[str, Snapshot] = {name: Snapshot() for name in self._sinks}
        #: Every model's facts a request was offered for, by key (``id``): held, so that a key is
        #: never reused. Written by the event loop, read by the sender thread.
        self._facts: dict[int, ModelFacts] = {}
        #: The keys whose facts the running export process has (the sender thread's).
        self._facts_sent: set[int] = set()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._listener: threading.Thread | None = None
        self._sender = threading.Thread(target=self._send_all, name="monitor-relay", daemon=True)
        #: When the next start of the export process may be tried, and the pause after that one.
        self._next_start = 0.0
        self._start_pause = RESTART_PAUSE
        self._started_at = 0.0
        self._keys = itertools.count()

    # The event loop's side.

    def offer(self, scored: ScoredRequest) -> None:
        """Queue ``scored`` (a small one as its encoded record), or drop and count it when the
        queue is full; never waits."""
        rows = scored.num_rows
        queue = self._queue
        if queue.full(rows):  # a stalled sink's: not worth encoding
            dropped = events_in(rows)
        else:
            facts = scored.facts
            key = id(facts)
            if key not in self._facts:
                self._facts[key] = facts
            encoded = encoded_of(scored, self._headers, key)
            if encoded is None and scored.score_body is not None:
                scored = dataclasses.replace(scored, score_body=None)  # queued with its cells, not both
            dropped = queue.offer(encoded if encoded is not None else scored)
        if dropped:
            with self._lock:
                self._dropped += dropped

    def snapshots(self) -> dict[str, Snapshot]:
        """Each sink's counts: the export process's, plus what was dropped or waits here."""
        with self._lock:
            dropped, depth = self._dropped, self._queue.depth
            return {
                name: (self._retired[name] + snapshot).plus(dropped=dropped, depth=depth)
                for name, snapshot in self._reported.items()
            }

    # Start and stop.

    def start(self) -> None:
        self._sender.start()

    def close(self, timeout: float) -> None:
        """Send what waits, then have the export process flush its sinks within ``timeout``
        seconds; what is left then is counted as dropped. The sender thread is the socket's one
        writer: it sends the last batches and the "close" itself."""
        ends = time.monotonic() + timeout
        self._queue.close(ends)
        self._sender.join(max(0.0, ends - time.monotonic()))
        listener = self._listener
        if listener is not None:  # the last report comes after the flush
            listener.join(max(0.1, ends + 2 - time.monotonic()))
        self._stop_process(wait=max(0.1, ends + 2 - time.monotonic()))
        left = sum(events_in(_rows_of(item)) for item in self._queue.clear())
        with self._lock:
            self._dropped += left
        if left:
            log.warning("Monitoring: %d events not handed to the export process before the stop", left)

    # The sender thread.

    def _send_all(self) -> None:
        # Started with the server, not with the first request kept: a process that cannot start
        # says so in the log at once, not first under traffic.
        try:
            self._connected()
        except Exception as exc:
            log.error("Monitoring: the export process did not start (%s); it is tried again", exc)
        while True:
            batch = self._queue.take(1.0)
            if batch is None:
                break
            if batch:
                self._hand_over(batch)
        sock = self._socket
        if sock is not None and self._process is not None and self._process.poll() is None:
            with contextlib.suppress(OSError):
                send_frame(sock, ("close", max(0.0, self._queue.flush_until - time.monotonic())))

    def _hand_over(self, batch: list[ScoredRequest | Encoded]) -> None:
        """Send ``batch`` to the export process, starting it first if it is not running. While a
        start is backed off the thread waits (the queue fills meanwhile, and drops beyond its
        bound, counted); a batch that cannot be sent by a stop's flush time, or that breaks the
        thread's own code, is counted as dropped. Whatever goes wrong, the thread goes on: one
        that ended would leave every later request to be dropped until the server restarted."""
        failures = 0
        while True:
            try:
                sock = self._connected()
                records: list[tuple[int, Handed]] = []
                for item in batch:
                    key = item[2] if isinstance(item, tuple) else id(item.facts)
                    if key not in self._facts_sent:
                        send_frame(sock, ("facts", key, self._facts[key]))
                        self._facts_sent.add(key)
                    if isinstance(item, tuple):
                        records.append((key, item[0] if item[3] is None else (item[0], item[3])))
                        continue
                    sliced = None
                    if isinstance(item.frame, Frame) and item.num_rows > SLICE_ROWS:
                        sliced = Sliced(next(self._keys))
                        for part in slices_of(item):
                            send_frame(sock, ("rows", sliced.key, part))
                    records.append((key, record_of(item, self._headers, key, sliced)))
                send_frame(sock, ("batch", records))
                return
            except _BackingOff:
                if not self._queue.pause_until(self._next_start):
                    break
            except _Waiting:
                break
            except (OSError, EOFError, RuntimeError) as exc:
                log.error("Monitoring: the export process failed (%s); starting it again", exc)
                self._stop_process()
                failures += 1
                if failures > 1:
                    self._back_off()
            except Exception:
                log.exception("Monitoring: %d requests could not be handed to the export process", len(batch))
                break
        with self._lock:
            self._dropped += sum(events_in(_rows_of(item)) for item in batch)

    def _connected(self) -> socket.socket:
        """The running export process's socket, or a new process's: ``_Waiting`` while a start
        that failed is backed off (1 s, doubling to 60 s), or once a stop's flush time is spent."""
        process = self._process
        if self._socket is not None and process is not None:
            if process.poll() is None:
                return self._socket
            log.error(
                "Monitoring: the export process ended (exit status %s); starting it again", process.returncode
            )
            self._stop_process()
            if time.monotonic() - self._started_at < SHORT_LIFE:
                self._back_off()  # it dies as soon as it starts: a crash loop, not a mishap
        now = time.monotonic()
        if now >= self._queue.flush_until:
            raise _Waiting("the stop's flush time is spent")
        if now < self._next_start:
            raise _BackingOff()
        try:
            sock, process = self._start_process()
        except BaseException:
            self._back_off()
            raise
        self._start_pause = RESTART_PAUSE
        self._started_at = time.monotonic()
        self._process, self._socket = process, sock
        self._listener = threading.Thread(
            target=self._listen, args=(sock,), name="monitor-reports", daemon=True
        )
        self._listener.start()
        return sock

    def _back_off(self) -> None:
        self._next_start = time.monotonic() + self._start_pause
        self._start_pause = min(self._start_pause * 2, LONGEST_START_PAUSE)

    def _start_process(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "scorer_core.monitor.exporter", "--fd", str(theirs.fileno())]
        # Credentials the export process has no use for stay out of it: its settings and its
        # environment. PYTHONSAFEPATH: `python -m` would put the working directory first on
        # sys.path. A session of its own: a Ctrl-C or a signal to the server's process group
        # leaves it to flush when the server says so (or when the server is gone).
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CREDENTIAL_VARIABLES)}
        try:
            process = subprocess.Popen(
                command,
                pass_fds=(theirs.fileno(),),
                env={**env, "PYTHONSAFEPATH": "1"},
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            self._facts_sent.clear()
            send_frame(ours, ("setup", _without_credentials(self._settings)))
            ours.settimeout(START_TIMEOUT)
            reply = recv_frame(ours)
            ours.settimeout(None)
            if not (isinstance(reply, tuple) and reply[0] == "ready"):
                raise RuntimeError(f"the export process did not start: {reply!r}")
        except BaseException:
            ours.close()
            _end(process, 0)
            raise
        return ours, process

    def _listen(self, sock: socket.socket) -> None:
        """Keep the export process's reports until its last one, or until it goes away; a
        retired process's late report is not kept (its counts were retired already)."""
        try:
            while True:
                message = recv_frame(sock)
                if isinstance(message, tuple) and message[0] == "stats":
                    with self._lock:
                        if self._socket is not sock:
                            return
                        self._reported.update(message[1])
                    if message[2]:  # the last report, after the flush
                        return
        except (OSError, EOFError, ConnectionError):
            return

    def _stop_process(self, wait: float = 5.0) -> None:
        """End the export process (waiting ``wait`` seconds for it to finish a flush) and retire
        its counts. What it still held (its last reported depth) is counted as dropped: a process
        killed, or dead, took its queues and the batches it was sending with it (as of its last
        report: at most half a second old)."""
        with self._lock:
            process, sock, listener = self._process, self._socket, self._listener
            self._process = self._socket = self._listener = None
            for name, snapshot in self._reported.items():
                held = snapshot.depth + snapshot.in_flight
                lost = dataclasses.replace(snapshot, dropped=snapshot.dropped + held, depth=0, in_flight=0)
                self._retired[name] = self._retired[name] + lost
                self._reported[name] = Snapshot()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes its listener, blocked in a read
            sock.close()
        if listener is not None and listener is not threading.current_thread():
            listener.join(1)
        if process is not None:
            _end(process, wait)


def _rows_of(item: ScoredRequest | Encoded) -> int:
    return item[1] if isinstance(item, tuple) else item.num_rows


class _Waiting(Exception):
    """No export process now, nor will there be: a stop's flush time is spent."""


class _BackingOff(Exception):
    """No export process now: a failed start is backed off until ``Relay._next_start``."""


#: Environment variables of credentials the export process never needs.
_CREDENTIAL_VARIABLES = ("SCORER_PASSPHRASE", "SCORER_OIDC_")


def _without_credentials(settings: Settings) -> Settings:
    """The settings the export process gets: the deployment's credential left out."""
    return settings.model_copy(update={"passphrase": None, "passphrase_hash": None})


def _end(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
