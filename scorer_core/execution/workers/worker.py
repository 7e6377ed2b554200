"""``python -m scorer_core.execution.workers.worker``: one worker process, started by ``WorkerPool``.

It loads the model, says hello with the model's facts (or why it failed), then scores each batch
it receives with ``run_batch``, telling the server of answers as soon as they are known, until the
server closes the socket.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from scorer_core.config.logs import configure_logging
from scorer_core.config.plugins import load_plugins
from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.execution.batch import Batch
from scorer_core.execution.executors import load_runtime
from scorer_core.execution.isolation import Outcome, run_batch
from scorer_core.execution.workers.protocol import recv_message, send_message

log = logging.getLogger("scorer_core.worker")


def _exit_with_the_server() -> None:
    """Exit when the server that started this worker is gone, however it went (even mid-load).

    A watchdog thread, not Linux's parent-death signal: that fires when the server *thread* that
    spawned the worker ends, and the pool spawns workers from short-lived threads.
    """
    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="scorer-worker-watchdog", daemon=True).start()


class _EarlyAnswers:
    """Sends outcomes known before the batch ends to the server at once, except the last group,
    which the batch's report carries: a batch that succeeds in one call costs one message."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.held: list[tuple[int, Outcome]] | None = None

    def __call__(self, pairs: Sequence[tuple[int, Outcome]]) -> None:
        if self.held is not None:
            send_message(self.sock, ("settled", self.held))
        self.held = list(pairs)


def main() -> int:
    _exit_with_the_server()
    # A crash in the model's native code ends this process with no Python exception; the fault
    # handler writes the signal and the model call's stack to stderr, the server's log.
    faulthandler.enable(all_threads=False)
    parser = argparse.ArgumentParser(prog="python -m scorer_core.execution.workers.worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--runtime", required=True)
    args = parser.parse_args()
    settings = load_settings(model_path=args.model, runtime=args.runtime)
    configure_logging(settings.log_level, settings.log_format)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args.socket)
    try:
        plugins = load_plugins(settings)
        runtime_cls = plugins.runtime_to_load(args.model, args.runtime)
        runtime, facts = load_runtime(runtime_cls, args.model, settings)
    except ConfigurationError as exc:
        send_message(sock, ("failed", exc))  # the operator's to fix: passed on as it is
        return 1
    except Exception as exc:
        send_message(sock, ("failed", str(exc)))
        return 1
    send_message(sock, ("ready", facts))
    while True:
        try:
            message = recv_message(sock)
        except ConnectionError:
            return 0
        if message is None:
            return 0
        merged, offsets, deadlines = message
        tasks = Batch.from_merged(merged, offsets, deadlines).tasks
        send_message(sock, run_batch(runtime, tasks, merged=merged, settle=_EarlyAnswers(sock)))


if __name__ == "__main__":
    sys.exit(main())
