"""The parent process of :mod:`scorer_core.execution.workers.forkserver`: it imports libraries
once, then forks.

Started by ``Forkserver`` as ``python THIS_FILE NAME MODULE...``, never imported. It imports each
MODULE, reports on stdout (``not preloaded: ...`` for each that failed, then ``ready``, or
``refused: ...`` when its imports started a thread, which would make forking it unsafe), and then
serves the abstract Unix socket NAME: each connection asks for one process with a JSON line
(``argv``, ``env``, ``cwd``, ``rlimits``) and passes the file descriptors its stdout and stderr go
to beside it (SCM_RIGHTS; one for both). The answer is the child's pid as one line, with its pidfd,
then, once the child has exited, its exit code as ``subprocess.Popen`` gives it (negative: the
signal that ended it). End of input on stdin (the process that started it is gone) ends it.

The child returns from ``serve`` and the rest of this script becomes its main program: it takes
the environment, working directory, path and output it was asked for, then runs ``argv``'s module
as ``python -m`` would, so that the interpreter's own exit (threads joined, ``atexit`` handlers,
buffers flushed, the exit status of ``SystemExit``) is the child's.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import json
import os
import resource
import runpy
import select
import selectors
import signal
import socket
import struct
import sys
import threading
from typing import IO, Any

#: What a request may take: an environment of a few hundred variables.
_MAX_REQUEST = 4 << 20


def exit_when_orphaned_while_importing() -> None:
    """End of input on stdin (the process that started this one is gone) ends this one even during
    its imports, which ``serve`` does not watch yet: SIGIO comes when stdin becomes readable."""

    def on_input(signum: int, frame: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            if not os.read(0, 1):
                os._exit(0)

    signal.signal(signal.SIGIO, on_input)
    fcntl.fcntl(0, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(0, fcntl.F_SETFL, fcntl.fcntl(0, fcntl.F_GETFL) | os.O_ASYNC | os.O_NONBLOCK)
    on_input(signal.SIGIO, None)  # it may have ended before this process got here: no signal then


def watched_by_serve() -> None:
    """Stdin back as it was, and SIGIO to its default, as a fresh interpreter has them."""
    fcntl.fcntl(0, fcntl.F_SETFL, fcntl.fcntl(0, fcntl.F_GETFL) & ~(os.O_ASYNC | os.O_NONBLOCK))
    signal.signal(signal.SIGIO, signal.SIG_DFL)
    if select.select([0], [], [], 0)[0] and not os.read(0, 1):  # ended in between
        os._exit(0)


def preload(modules: list[str], report: IO[str]) -> None:
    try:  # each child gets a pidfd: without them (a kernel before 5.3, a seccomp filter) none can
        os.close(os.pidfd_open(os.getpid()))
    except OSError as error:
        print(f"refused: no pidfd could be opened ({error})", file=report, flush=True)
        sys.exit(3)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # a library this environment lacks is simply not preloaded
            print(f"not preloaded: {name}: {error!r}", file=report, flush=True)
    others = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
    if others:
        # A fork has only the thread that forked: locks the others held stay held in the child.
        print(f"refused: its imports started threads ({', '.join(others)})", file=report, flush=True)
        sys.exit(3)


def check_peer(connection: socket.socket) -> None:
    """Refuse any peer but the process that started this one.

    An abstract socket has no file permissions, and its name is listed in /proc/net/unix for every
    local user to read: without this, any of them could have this process fork whatever module it
    names, with whatever environment, as this process's user.
    """
    pid, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if pid != os.getppid() or uid != os.getuid():
        raise ValueError(f"a connection from process {pid} (user {uid}), not from the one that started this")


def read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    connection.settimeout(30)  # a client that never finishes its request must not stall the rest
    data, fds, _, _ = socket.recv_fds(connection, 65536, 2)
    try:
        while not data.endswith(b"\n"):
            more = connection.recv(65536)
            if not more or len(data) > _MAX_REQUEST:
                raise ValueError("an incomplete request")
            data += more
        if len(fds) not in (1, 2):
            raise ValueError("a request without its output's file descriptors")
        return json.loads(data), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def serve(name: str, report: IO[str]) -> tuple[dict[str, Any], list[int]]:
    """Fork a child per request until stdin ends; return only in a child, with its request.

    A failure with one request (a client that went away, a fork the system refused) is that
    request's: it is logged and the loop goes on, so that the children already started can still
    be waited for.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)  # the abstract namespace: no path in the file system
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "session")
    print("ready", file=report, flush=True)
    report.close()
    #: Each live child's pidfd, and the connection its exit code goes to.
    children: dict[int, tuple[int, socket.socket]] = {}
    while True:
        for key, _ in selector.select():
            if key.data == "session":
                if not os.read(key.fd, 4096):
                    os._exit(0)  # the children are the session's to stop; they outlive this
            elif key.data == "accept":
                connection, _ = listener.accept()
                try:
                    check_peer(connection)
                    request, outputs = read_request(connection)
                except (OSError, ValueError) as error:
                    print(f"forkserver: refused a request: {error}", file=sys.stderr, flush=True)
                    connection.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                try:
                    pid = os.fork()
                except OSError as error:
                    print(f"forkserver: could not fork: {error}", file=sys.stderr, flush=True)
                    for fd in outputs:
                        os.close(fd)
                    connection.close()
                    continue
                if pid == 0:
                    selector.close()
                    listener.close()
                    connection.close()
                    for pidfd, (_, other) in children.items():
                        os.close(pidfd)
                        other.close()
                    return request, outputs
                for fd in outputs:
                    os.close(fd)
                pidfd = -1
                try:
                    pidfd = os.pidfd_open(pid)
                    socket.send_fds(connection, [f"{pid}\n".encode()], [pidfd])
                except OSError as error:  # nobody could ever stop this child: it goes
                    print(f"forkserver: could not hand a child over: {error}", file=sys.stderr, flush=True)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    if pidfd >= 0:
                        os.close(pidfd)
                    connection.close()
                    continue
                children[pidfd] = (pid, connection)
                selector.register(pidfd, selectors.EVENT_READ, "exit")
            else:
                pid, connection = children.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):  # the session stopped listening for this one
                    connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                connection.close()


def become(request: dict[str, Any], outputs: list[int]) -> str:
    """Take on what a fresh ``python -m MODULE`` started with ``request`` would have; its module."""
    os.dup2(outputs[0], 1)
    os.dup2(outputs[-1], 2)
    for fd in outputs:
        if fd > 2:
            os.close(fd)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    for name, (soft, hard) in request["rlimits"].items():  # the caller's, as a child of its own has
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError) as error:
            print(f"forkserver: could not set {name} to ({soft}, {hard}): {error}", file=sys.stderr)
    env: dict[str, str] = request["env"]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(env)
    # `python -m` puts the working directory first (unless PYTHONSAFEPATH), then PYTHONPATH.
    first = [] if env.get("PYTHONSAFEPATH") else [os.getcwd()]
    # Absolute, and each once, as `site` leaves a fresh interpreter's path.
    extra = [os.path.abspath(entry) for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path[:] = list(dict.fromkeys(first + extra + BASE_PATH))
    generator = sys.modules.get("numpy.random")
    if generator is not None:  # seeded when imported: each child needs its own
        generator.seed()
    argv: list[str] = request["argv"]
    sys.argv = ["-m", *argv[2:]]  # runpy sets argv[0] to the module's file, as `python -m` does
    # A fresh `python -m` has not imported the module it runs (runpy warns when it has been).
    sys.modules.pop(argv[1], None)
    return argv[1]


if __name__ == "__main__":
    # This script's directory, which `python -m` in the children would not have (none is added
    # under PYTHONSAFEPATH).
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    #: The path a fresh interpreter gets from its installation, to which a child adds its own
    #: PYTHONPATH and working directory: this one's, less its own PYTHONPATH.
    OWN_PATH = {os.path.abspath(e) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e}
    BASE_PATH = [entry for entry in sys.path if os.path.abspath(entry) not in OWN_PATH]
    # The report goes to the caller through what was stdout; a library that prints while it is
    # imported writes to stderr instead, where it cannot be taken for the report.
    REPORT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    exit_when_orphaned_while_importing()
    preload(sys.argv[2:], REPORT)
    watched_by_serve()
    gc.freeze()  # the preloaded objects stay shared with the children instead of being copied
    module = become(*serve(sys.argv[1], REPORT))
    del preload, read_request, serve, become
    runpy.run_module(module, run_name="__main__", alter_sys=True)
