"""How many threads a model call's native libraries may start (OpenMP, BLAS), per executor.

Gradient-boosting and linear models parallelise each call over an OpenMP or BLAS pool sized to
the machine's cores, not to the cores the process may use: in a container with a CPU quota, or
beside worker processes, that pool competes with the event loop and the other model calls, and
OpenMP's threads spin while they wait for work. Measured on a 2-core machine: with a model in one
worker process, single-row requests at 64 clients ran at 2,623 req/s with one thread per call and
1,760 with the libraries' default of two; in the server process, two threads were the faster (a
HistGradientBoosting pipeline's single rows at 16 clients, 1,139 and 988 req/s against 872 and
865 with one).

So by default (``SCORER_MODEL_LIBRARY_THREADS`` unset) a model in the server process gets the CPUs
the process may use (its affinity, bounded by its cgroup's CPU quota), and each of ``n`` worker
processes that number divided by ``n + 1``, the server's own process taking a share, at least one.
A number sets it for every executor; 0 leaves each library's own default. The limit is set where
the model is called, after it has loaded: OpenMP keeps it per calling thread, so each model
thread, and each worker process, sets it for itself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from threadpoolctl import threadpool_limits

__all__ = ["available_cpus", "default_library_threads", "limit_library_threads"]

#: cgroup v2's CPU quota: "max" or "<quota> <period>" (microseconds).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def limit_library_threads(threads: int) -> None:
    """Limit the native thread pools loaded now, for the calling thread (OpenMP) and the process
    (BLAS), to ``threads`` each; 0 changes nothing."""
    if threads > 0:
        threadpool_limits(limits=threads)


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its affinity, bounded by its cgroup's CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to read: the affinity alone
    return max(1, count)


def default_library_threads(workers: int, cpus: int | None = None) -> int:
    """Threads per model call when the setting is unset: every available CPU in the server
    process (``workers`` 0), else an equal share for each worker and the server, at least one."""
    cpus = available_cpus() if cpus is None else cpus
    return cpus if workers == 0 else max(1, cpus // (workers + 1))
