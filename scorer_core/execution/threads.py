"""How many threads a model call's native libraries may start (OpenMP, BLAS): one by default.

Gradient-boosting and linear models parallelise each call over an OpenMP or BLAS pool of one
thread per core. In a scoring server that pool competes with the event loop and with the other
model calls for the same cores, and OpenMP's threads spin while they wait for work: measured on a
2-core machine under load, one single-row call of a scikit-learn HistGradientBoosting pipeline took
about 1.1 s with the default pool against 5 ms with one thread. The runtime gets its parallelism
from batching and from worker processes instead, as Ray gives each worker one OpenMP thread.

``SCORER_MODEL_LIBRARY_THREADS`` changes the number; 0 leaves each library's own default. The
limit is set where the model is called, after it has loaded (the libraries it uses are loaded by
then): OpenMP keeps it per calling thread, so each model thread, and each worker process's, sets it
for itself.
"""

from __future__ import annotations

import logging

__all__ = ["limit_library_threads"]

log = logging.getLogger(__name__)


def limit_library_threads(threads: int) -> None:
    """Limit the native thread pools loaded now, for the calling thread (OpenMP) and the process
    (BLAS), to ``threads`` each; 0 changes nothing."""
    if threads <= 0:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a core dependency; kept optional for embedders
        log.warning("threadpoolctl is not installed: SCORER_MODEL_LIBRARY_THREADS has no effect")
        return
    threadpool_limits(limits=threads)
