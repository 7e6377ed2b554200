"""The export process: ``python -m scorer_core.monitor.exporter --fd N``, started by a ``Relay``.

It gets the server's settings, builds the sinks' outboxes (``monitor.outboxes_of``), and then
batches of requests, which it offers to every outbox; it reports the sinks' counts every half
second, and once more after the flush that ``close`` (or the server's end) asks for. It runs the
sinks exactly as they would run in the server, with their own threads, retries and bounds: only
the GIL they take is no longer the server's.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
from typing import Any

from scorer_core.config.logs import configure_logging
from scorer_core.config.settings import Settings
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.workers.framing import recv_frame, send_frame
from scorer_core.monitor.monitor import outboxes_of
from scorer_core.monitor.outbox import Outbox
from scorer_core.monitor.relay import scored_of

log = logging.getLogger("scorer_core.monitor")

#: How much less CPU priority than the server the export process takes (nice(2)): where the
#: server and the export process want more CPU than there is, the server's requests come first,
#: and the export's queues absorb the difference (dropping, and counting, beyond their bounds).
EXPORT_NICENESS = 10
#: Seconds between two reports of the sinks' counts.
REPORT_SECONDS = 0.5


def serve(sock: socket.socket) -> None:
    setup: Any = recv_frame(sock)
    settings = setup[1]
    if setup[0] != "setup" or not isinstance(settings, Settings):
        send_frame(sock, ("failed", "the server's first message was not the settings"))
        return
    configure_logging(settings.log_level, settings.log_format)
    try:
        outboxes = outboxes_of(settings)
    except Exception as exc:
        send_frame(sock, ("failed", str(exc)))
        return
    for outbox in outboxes:
        outbox.start()
    sending = threading.Lock()
    stop = threading.Event()

    def report(last: bool = False) -> None:
        snapshots = {name: s for outbox in outboxes for name, s in outbox.snapshots().items()}
        with sending:
            send_frame(sock, ("stats", snapshots, last))

    def reporter() -> None:
        while not stop.wait(REPORT_SECONDS):
            try:
                report()
            except OSError:
                return

    send_frame(sock, ("ready",))
    threading.Thread(target=reporter, name="monitor-reporter", daemon=True).start()
    flush = settings.monitor_flush_seconds
    facts: dict[int, ModelFacts] = {}
    slices: dict[int, list[Any]] = {}
    while True:
        try:
            message: Any = recv_frame(sock)
        except (OSError, EOFError, ConnectionError):
            log.warning("Monitoring: the server went away; flushing the sinks")
            break
        try:
            if message[0] == "rows":
                slices.setdefault(message[1], []).append(message[2])
            elif message[0] == "batch":
                for key, record in message[1]:
                    try:
                        scored = scored_of(record, facts[key], slices)
                    except Exception:  # one bad record must not take the rest of its batch along
                        log.exception("Monitoring: a request's record could not be read; counted as dropped")
                        for outbox in outboxes:
                            outbox.tally.count(dropped=1)
                        continue
                    for outbox in outboxes:
                        outbox.offer(scored)
            elif message[0] == "facts":
                facts[message[1]] = message[2]
            elif message[0] == "close":
                flush = message[1]
                break
        except Exception:  # one bad message must not end the export: the rest are good
            log.exception("Monitoring: the export process could not take a message from the server")
    stop.set()
    _close(outboxes, flush)
    with contextlib.suppress(OSError):
        report(last=True)


def _close(outboxes: list[Outbox], timeout: float) -> None:
    """Flush every sink within one deadline, all at once: one after another, the last ones would
    be killed by the server mid-flush."""
    closers = [threading.Thread(target=outbox.close, args=(timeout,), daemon=True) for outbox in outboxes]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(timeout + 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the socket to the server")
    args = parser.parse_args(argv)
    os.nice(EXPORT_NICENESS)
    # It ends when the server says "close", or when the server is gone (end of file): a signal
    # meant for the server (Ctrl-C, a whole control group's SIGTERM) must not cut the flush short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=args.fd) as sock:
        serve(sock)


if __name__ == "__main__":
    main()
