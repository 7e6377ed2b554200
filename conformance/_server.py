"""``python -m conformance._server MODEL``: the real server, with model calls' headers recorded.

The selected runtime is subclassed so that each model call appends what ``request_headers``
holds at that moment to the file named by ``SCORER_CONFORMANCE_HEADER_LOG``. Everything else is
the production server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from scorer_core.cli import configure_logging, serve
from scorer_core.context import request_headers
from scorer_core.errors import ScorerError
from scorer_core.runtime import Runtime
from scorer_core.settings import load_settings

_lock = threading.Lock()


def _record(log_path: str, operation: str, rows: int) -> None:
    entry = {"operation": operation, "rows": rows, "headers": dict(request_headers.get())}
    with _lock, open(log_path, "a") as log:
        log.write(json.dumps(entry) + "\n")


def recording(log_path: str) -> Any:
    def wrap(runtime_cls: type[Runtime]) -> type[Runtime]:
        class Recording(runtime_cls):  # type: ignore[valid-type,misc]
            def score(self, batch: Any) -> Any:
                _record(log_path, "score", batch.num_rows)
                return super().score(batch)

            def score_with_intervals(self, batch: Any) -> Any:
                _record(log_path, "score_with_intervals", batch.num_rows)
                return super().score_with_intervals(batch)

            def contributions(self, batch: Any, shapley_type: Any) -> Any:
                _record(log_path, "contributions", batch.num_rows)
                return super().contributions(batch, shapley_type)

        Recording.__name__ = f"Recording{runtime_cls.__name__}"
        return Recording

    return wrap


def recording_from_env(runtime_cls: type[Runtime]) -> type[Runtime]:
    """``conformance._server:recording_from_env``: importable, so worker processes can apply it too."""
    return recording(os.environ["SCORER_CONFORMANCE_HEADER_LOG"])(runtime_cls)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance._server")
    parser.add_argument("model_path", type=Path, nargs="?")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runtime")
    args = parser.parse_args()
    settings = load_settings(
        model_path=args.model_path, runtime=args.runtime, host="127.0.0.1", port=args.port
    )
    configure_logging(settings.log_level)
    try:
        return serve(settings, wrap_runtime="conformance._server:recording_from_env")
    except ScorerError as exc:
        print(f"scorer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
