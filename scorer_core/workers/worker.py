"""``python -m scorer_core.workers.worker``: one worker process, started by ``WorkerPool``.

It loads the model, says hello with the model's facts (or why it failed), then scores each batch
it receives with ``run_batch`` until the server closes the socket.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from scorer_core.batching.batch import Batch, run_merged
from scorer_core.errors import ConfigurationError
from scorer_core.model import load_model
from scorer_core.plugins import load_plugins
from scorer_core.settings import load_settings
from scorer_core.workers.pool import ModelFacts, resolve_wrapper
from scorer_core.workers.protocol import recv_message, send_message

log = logging.getLogger("scorer_core.worker")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m scorer_core.workers.worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--wrap-runtime")
    args = parser.parse_args()
    settings = load_settings(model_path=args.model, runtime=args.runtime)
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args.socket)
    try:
        runtime_cls = load_plugins(settings).select_runtime(args.model, args.runtime)
        if args.wrap_runtime:
            runtime_cls = resolve_wrapper(args.wrap_runtime)(runtime_cls)
        model = load_model(runtime_cls, args.model, settings)
    except ConfigurationError as exc:
        send_message(sock, ("failed", exc))  # the operator's to fix: passed on as it is
        return 1
    except Exception as exc:
        send_message(sock, ("failed", str(exc)))
        return 1
    send_message(sock, ("ready", ModelFacts.of(model)))
    while True:
        try:
            message = recv_message(sock)
        except ConnectionError:
            return 0
        if message is None:
            return 0
        merged, offsets = message
        send_message(sock, run_merged(model, Batch.from_merged(merged, offsets), merged))


if __name__ == "__main__":
    sys.exit(main())
