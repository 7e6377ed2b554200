"""A plugin that records the headers model calls see, for the suite's header checks.

``start_server`` registers it through ``SCORER_EXTRA_PLUGINS=conformance.recording``, like any
plugin under development, so the server and each of its worker processes load it. It wraps the
selected runtime so that each model call appends what ``request_headers`` holds at that moment
to the file named by ``SCORER_CONFORMANCE_HEADER_LOG``; without that variable it does nothing.
It writes header values to disk, so it is never installed as an entry point.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from scorer_core import Runtime, hookimpl, request_headers

__all__ = ["HEADER_LOG_ENV", "scorer_wrap_runtime"]

HEADER_LOG_ENV = "SCORER_CONFORMANCE_HEADER_LOG"
_lock = threading.Lock()


def _record(log_path: str, operation: str, rows: int) -> None:
    entry = {"operation": operation, "rows": rows, "headers": dict(request_headers.get())}
    # Header values may be credentials: only this user may read the file.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with _lock, os.fdopen(fd, "a") as log:
        log.write(json.dumps(entry) + "\n")


@hookimpl
def scorer_wrap_runtime(runtime: type[Runtime]) -> type[Runtime] | None:
    log_path = os.environ.get(HEADER_LOG_ENV, "")
    if not log_path:
        return None
    logging.getLogger(__name__).warning(
        "Recording every model call's forwarded headers (credentials included) to %s: a test "
        "aid of the conformance suite; never set %s in production",
        log_path,
        HEADER_LOG_ENV,
    )

    class Recording(runtime):  # type: ignore[valid-type,misc]
        def score(self, batch: Any) -> Any:
            _record(log_path, "score", batch.num_rows)
            return super().score(batch)

        def score_with_intervals(self, batch: Any) -> Any:
            _record(log_path, "score_with_intervals", batch.num_rows)
            return super().score_with_intervals(batch)

        def contributions(self, batch: Any, shapley_type: Any) -> Any:
            _record(log_path, "contributions", batch.num_rows)
            return super().contributions(batch, shapley_type)

    Recording.__name__ = f"Recording{runtime.__name__}"
    return Recording
