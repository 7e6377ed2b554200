"""Hosting the app with uvicorn, as ``scorer serve`` does: the listener, the server and its stop.

Kept in the server layer, not in the CLI, so that other hosts (Ray Serve's, in ``scorer_ray``) and
tests reach the same pieces:

- ``bind_listener``: the socket, bound before anything slow happens.
- ``uvicorn_config``: uvicorn's settings from ours, with the guarded HTTP/1.1 protocol
  (``server/connections.py``).
- ``GracefulServer``: uvicorn's server, except that a stop asked for by a signal ends the process
  with status 0, is certain to end it (a forced exit past ``SCORER_SHUTDOWN_GRACE``), and that it
  says where it listens.
- ``exit_past_lingering_threads``: an exit that waits for no thread a model left running.

uvicorn's private members are not used here: signals are captured by our own
``capture_signals`` (see "What we rely on in our dependencies" in docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn

from scorer_core.config.selection import remove_fetched_models
from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.server.connections import connection_limits, guarded_protocol

__all__ = [
    "GracefulServer",
    "bind_listener",
    "exit_past_lingering_threads",
    "lingering_threads",
    "uvicorn_config",
]

log = logging.getLogger("scorer_core")

#: The signals that stop the server gracefully.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long past SCORER_SHUTDOWN_GRACE a stop may take before the process is ended regardless.
_FORCED_EXIT_MARGIN_SECONDS = 5.0


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything slow happens: a port in use is reported at
    once, not after a model has spent minutes loading."""
    # uvicorn's own rule: IPv6 when the host has a colon, else IPv4 (a name resolves to IPv4).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as exc:
        sock.close()
        raise ConfigurationError(f"Cannot listen on host '{host}' (--host / SCORER_HOST): {exc}") from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"Port {port} on {host} is already in use; choose another with --port or SCORER_PORT"
            ) from None
        raise ConfigurationError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` under ``settings``, with this server's connection guards."""
    tls = settings.tls()
    return uvicorn.Config(
        app,
        http=guarded_protocol(connection_limits(settings)),
        log_level=settings.log_level,
        log_config=None,  # configure_logging's handler and format, not uvicorn's
        access_log=False,  # ours (SCORER_ACCESS_LOG) has the request id, rows and endpoint
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace)),
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that a stop asked for by SIGTERM or Ctrl-C ends with status 0,
    that the stop is certain, and that it says where it listens.

    uvicorn re-raises the signal after its graceful shutdown, so the process ends as killed
    (143) and ``make serve`` prints "Terminated", as if something had gone wrong: our own
    ``capture_signals`` does not. Given a socket, uvicorn also prints no "running on" line;
    ``Listening on`` replaces it, once the socket accepts.
    """

    #: Set when a signal asked the server to stop: a load it cut short is then no failure.
    signalled = False

    def __init__(self, config: uvicorn.Config, listener: socket.socket, grace: float) -> None:
        super().__init__(config)
        self._listener = listener
        self._grace = grace
        self._scheme = "https" if config.ssl_certfile else "http"

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self._listener.getsockname()[:2]
            shown = f"[{host}]" if self._listener.family == socket.AF_INET6 else host
            log.info("Listening on %s://%s:%d (Press CTRL+C to quit)", self._scheme, shown, port)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Route the stop signals to ``handle_exit`` while serving, and restore the handlers after,
        without raising the signal again as uvicorn's own does."""
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may set signal handlers
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if not self.signalled:
            _exit_after(self._grace)
        self.signalled = True


def lingering_threads() -> list[str]:
    """The names of the threads Python would wait for at exit, this one aside."""
    current = threading.current_thread()
    return [t.name for t in threading.enumerate() if not t.daemon and t is not current and t.is_alive()]


def exit_past_lingering_threads(code: int, grace: float, call_age: float) -> None:
    """End the process now, with ``code``, when Python's exit would wait for threads to end.

    Python joins every non-daemon thread before it exits. A call stuck in the model never ends
    (``call_age``: how long the oldest still running has run, 0 for none), nor may a thread a
    model started and left (a flusher, a pool it never shut down): the server, already stopped
    cleanly, would wait for the forced exit of ``_exit_after`` and report a failure. Only a
    stuck call is one (status 1); a thread left running is named, and the stop is clean.
    """
    lingering = lingering_threads()
    if not lingering:
        return
    if call_age:
        log.error(
            "Shutdown did not finish within %g s (SCORER_SHUTDOWN_GRACE): a model call is stuck "
            "(running for %.0f s). Exiting now",
            grace,
            call_age,
        )
        code = 1
    else:
        log.warning("Not waiting for threads still running at exit: %s", ", ".join(map(repr, lingering)))
    remove_fetched_models()  # os._exit skips atexit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_after(grace: float) -> None:
    """End the process ``grace`` seconds from now (plus a moment to drain), whatever runs then.

    A model call stuck in a thread cannot be interrupted, nor can a model's ``close`` that never
    returns: a server asked to stop would hang. This daemon timer makes the stop certain. It says
    only what it knows, the threads still running: ``scorer serve`` tells a stuck call once the
    server has stopped.
    """

    def force() -> None:
        log.error(
            "Shutdown did not finish within %g s (SCORER_SHUTDOWN_GRACE) and %g s more; threads still "
            "running: %s. Exiting now",
            grace,
            _FORCED_EXIT_MARGIN_SECONDS,
            ", ".join(map(repr, lingering_threads())) or "none",
        )
        remove_fetched_models()  # os._exit skips atexit
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(grace + _FORCED_EXIT_MARGIN_SECONDS, force)
    timer.daemon = True
    timer.start()
