"""Servers started by forking a process that has imported their libraries once.

A ``scorer serve`` of an MLflow model spends about 3 CPU-seconds importing MLflow, scikit-learn
and the web stack before it reads its model; forked from a process that has them imported, it is
ready in about a third of that. A suite that starts hundreds of servers (this project's own) can
start them so: ``with servers_launched_by(Forkserver(PRELOAD)): ...``. Each server is still its own
process, with the environment, working directory, resource limits, output and arguments it was
given, running ``python -m`` as it would have. What differs: its libraries were imported before
its environment was set (a library that reads a variable when imported sees the forkserver's), its
RSS includes them, and ``ps`` shows the forkserver's command line. A test that bounds RSS relative
to a server's own should start it afresh (``servers_launched_by(popen_launcher)``).

The forkserver is scorer_core's own (``scorer_core.execution.workers.forkserver``, which forks
worker processes too), started with this session's environment less ``PYTHONPATH``, which each
server brings its own of. A command it cannot fork (see that module) is started with
``subprocess.Popen`` as before. Linux only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO

from conformance.target import ServerProcess, popen_launcher
from scorer_core.execution.workers import forkserver as _core
from scorer_core.execution.workers.forkserver import ForkedProcess

__all__ = ["ForkedProcess", "Forkserver"]


class Forkserver(_core.Forkserver):
    """A launcher for ``conformance.target.servers_launched_by``: it starts, on its first use, a
    process that imports ``preload`` and forks each server from itself. ``close`` ends that
    process; the servers are their callers' to stop.

    The forkserver starts with the environment this object was made in, so that variables its
    libraries read when imported are the session's, not those of whichever test first starts a
    server. Should it fail to start, every server is started afresh instead.
    """

    def __init__(self, preload: Iterable[str]) -> None:
        session = {k: v for k, v in os.environ.items() if k not in _core.HONOURED_VARIABLES}
        super().__init__(preload, session)

    def __call__(self, command: list[str], env: dict[str, str], output: IO[bytes]) -> ServerProcess:
        process = self.spawn(command, env, output.fileno())
        return process if process is not None else popen_launcher(command, env, output)
