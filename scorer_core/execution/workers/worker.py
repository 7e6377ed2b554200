"""``python -m scorer_core.execution.workers.worker``: one worker process, started by ``WorkerPool``.

It loads the model under the server's own settings (sent in ``Load``, not read again from the
environment, so that settings an embedder passed in code hold here too), says hello with the
model's facts (or why it failed), then scores each batch it receives with ``run_batch``, telling
the server of answers as soon as they are known, until the server says ``Stop`` or closes the socket.
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

from scorer_core.config.logs import configure_logging
from scorer_core.config.plugins import load_plugins
from scorer_core.errors import ConfigurationError
from scorer_core.execution.executors import load_runtime
from scorer_core.execution.isolation import Outcome, run_batch
from scorer_core.execution.merging import Batch
from scorer_core.execution.threads import limit_library_threads
from scorer_core.execution.workers.messages import (
    Failed,
    Load,
    Ready,
    Score,
    Settled,
    UnexpectedMessage,
    receive_from_server,
    send,
)

log = logging.getLogger("scorer_core.worker")


def _exit_with_the_server(server: int) -> None:
    """Exit when the process that started this worker is gone, however it went (even mid-load):
    the server (pid ``server``), or the forkserver it forked the worker from, which exits when the
    server does. A parent that is neither (the forkserver died before this ran, and the worker
    was handed to init) is gone already.

    A watchdog thread, not Linux's parent-death signal: that fires when the server *thread* that
    spawned the worker ends, and the pool spawns workers from short-lived threads.
    """
    parent = os.getppid()
    if parent != server and _parent_of(parent) != server:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="scorer-worker-watchdog", daemon=True).start()


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _EarlyAnswers:
    """Sends outcomes known before the batch ends to the server at once, except the last group,
    which the batch's report carries: a batch that succeeds in one call costs one message."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.held: list[tuple[int, Outcome]] | None = None

    def __call__(self, pairs: Sequence[tuple[int, Outcome]]) -> None:
        if self.held is not None:
            send(self.sock, Settled(self.held))
        self.held = list(pairs)


def main() -> int:
    # A crash in the model's native code ends this process with no Python exception; the fault
    # handler writes the signal and the model call's stack to stderr, the server's log.
    faulthandler.enable(all_threads=False)
    parser = argparse.ArgumentParser(prog="python -m scorer_core.execution.workers.worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--server", type=int, required=True, help="the server's pid")
    args = parser.parse_args()
    _exit_with_the_server(args.server)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args.socket)
    load = receive_from_server(sock)
    if not isinstance(load, Load):
        raise UnexpectedMessage(f"a worker expected Load first, not {type(load).__name__}")
    settings = load.settings
    configure_logging(settings.log_level, settings.log_format)
    try:
        plugins = load_plugins(settings)
        runtime_cls = plugins.runtime_to_load(load.model_path, load.runtime)
        runtime, facts = load_runtime(runtime_cls, load.model_path, settings)
    except ConfigurationError as exc:
        send(sock, Failed(exc))  # the operator's to fix: passed on as it is
        return 1
    except Exception as exc:
        send(sock, Failed(str(exc)))
        return 1
    # This thread makes every model call; the pool sets the number (execution.threads).
    limit_library_threads(settings.model_library_threads if settings.model_library_threads is not None else 1)
    send(sock, Ready(facts))
    while True:
        try:
            message = receive_from_server(sock)
        except ConnectionError:
            return 0
        if not isinstance(message, Score):  # Stop
            return 0
        tasks = Batch.from_merged(message.merged, message.offsets, message.deadlines).tasks
        send(sock, run_batch(runtime, tasks, merged=message.merged, settle=_EarlyAnswers(sock)))


if __name__ == "__main__":
    sys.exit(main())
