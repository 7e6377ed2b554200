"""The ``scorer`` command: ``serve`` a model, list ``plugins``, and commands that packages add.

Commands beyond these two come from the entry-point group ``scorer_core.commands`` (the
conformance suite adds ``scorer check`` that way), so the core never imports them.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import json
import logging
import math
import os
import platform
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from scorer_core import __version__
from scorer_core.config.logs import configure_logging
from scorer_core.config.plugins import Plugins, load_plugins
from scorer_core.config.settings import Settings, load_settings, removed_env_var_warnings
from scorer_core.errors import ConfigurationError, ScorerError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["COMMANDS_ENTRY_POINT_GROUP", "configure_logging", "main", "serve"]

log = logging.getLogger("scorer_core")

#: Entry points here name ``register(commands)`` functions that add a subcommand to ``scorer``:
#: ``commands`` is the ``argparse`` sub-parsers object; set ``func`` to ``f(args) -> int``.
COMMANDS_ENTRY_POINT_GROUP = "scorer_core.commands"


def _startup_warnings(settings: Settings) -> None:
    for message in removed_env_var_warnings():
        log.warning(message)
    for message in settings.header_forwarding.warnings():
        log.warning(message)
    clear_text = _credential_in_clear_text(settings)
    if clear_text:
        log.warning(clear_text)


def _credential_in_clear_text(settings: Settings) -> str | None:
    """A warning when a credential would cross the network unencrypted: a passphrase (or token)
    sent over plain HTTP to an interface other than loopback can be read by anyone on the path."""
    credential = (
        "SCORER_PASSPHRASE" if settings.passphrase is not None
        else "SCORER_PASSPHRASE_HASH" if settings.passphrase_hash is not None
        else "SCORER_OIDC_ISSUER" if settings.oidc_issuer is not None
        else None
    )  # fmt: skip
    if credential is None or settings.tls_cert is not None or _is_loopback(settings.host):
        return None
    return (
        f"{credential} is set and the server listens on {settings.host} over plain HTTP: clients' "
        "credentials travel in clear text. Set SCORER_TLS_CERT and SCORER_TLS_KEY, or put a TLS "
        "proxy or ingress in front and listen on 127.0.0.1 (docs/security.md)"
    )


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


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


def serve(settings: Settings) -> int:
    """Serve the configured model until SIGTERM/SIGINT; 0 after a clean stop, 1 if the model
    failed to load. Configuration errors are raised before the server starts listening."""
    import uvicorn

    from scorer_core.server.protocol import connection_limits, guarded_protocol
    from scorer_core.server.served import served_model

    _startup_warnings(settings)
    listener = bind_listener(settings.host, settings.port)
    try:
        server: uvicorn.Server | None = None

        def stop_on_load_failure() -> None:
            # Ends server.run() normally, so that we can exit 1 (a signal would end it as killed).
            if server is not None:
                server.should_exit = True

        tls = settings.tls()
        served = served_model(settings, on_load_failure=stop_on_load_failure)
        app, host = served.app, served.host
    except BaseException:
        listener.close()
        raise
    log.info("scorer-core %s serving '%s' with runtime '%s'", __version__, served.path, served.runtime)
    server = _uvicorn_server(
        listener,
        uvicorn.Config(
            app,
            http=guarded_protocol(connection_limits(settings)),
            log_level=settings.log_level,
            log_config=None,  # configure_logging's handler and format, not uvicorn's
            access_log=False,  # ours (SCORER_ACCESS_LOG) has the request id, rows and endpoint
            timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace)),
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        ),
        settings.shutdown_grace,
        scheme="https" if tls else "http",
    )
    server.run(sockets=[listener])
    code = 0
    if host.error is not None and not getattr(server, "signalled", False):
        print(f"scorer: error: the model failed to load: {host.error}", file=sys.stderr)
        code = 1
    call_age = host.executor.oldest_call_age() if host.ready else 0.0
    _exit_past_lingering_threads(code, settings.shutdown_grace, call_age)
    return code


def _lingering_threads() -> list[str]:
    """The names of the threads Python would wait for at exit, this one aside."""
    import threading

    current = threading.current_thread()
    return [t.name for t in threading.enumerate() if not t.daemon and t is not current and t.is_alive()]


def _exit_past_lingering_threads(code: int, grace: float, call_age: float) -> None:
    """End the process now, with ``code``, when Python's exit would wait for threads to end.

    Python joins every non-daemon thread before it exits. A call stuck in the model never ends
    (``call_age``: how long the oldest still running has run, 0 for none), nor may a thread a
    model started and left (a flusher, a pool it never shut down): the server, already stopped
    cleanly, would wait for the forced exit of ``_exit_after`` and report a failure. Only a
    stuck call is one (status 1); a thread left running is named, and the stop is clean.
    """
    lingering = _lingering_threads()
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
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_after(grace: float) -> None:
    """End the process ``grace`` seconds from now (plus a moment to drain), whatever runs then.

    A model call stuck in a thread cannot be interrupted, nor can a model's ``close`` that never
    returns: a server asked to stop would hang. This daemon timer makes the stop certain. It says
    only what it knows, the threads still running: ``serve`` tells a stuck call once the server
    has stopped.
    """
    import threading

    def force() -> None:
        log.error(
            "Shutdown did not finish within %g s (SCORER_SHUTDOWN_GRACE) and 5 s more; threads still "
            "running: %s. Exiting now",
            grace,
            ", ".join(map(repr, _lingering_threads())) or "none",
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(grace + 5.0, force)
    timer.daemon = True
    timer.start()


def _uvicorn_server(
    listener: socket.socket, config: uvicorn.Config, grace: float, *, scheme: str = "http"
) -> uvicorn.Server:
    """uvicorn's server, except that a stop asked for by SIGTERM or Ctrl-C ends with status 0,
    and that it says where it listens.

    uvicorn re-raises the signal after its graceful shutdown, so the process ends as killed
    (143) and ``make serve`` prints "Terminated", as if something had gone wrong. Given a socket,
    it also prints no "running on" line; ``Listening on`` replaces it, once the socket accepts.
    """
    import uvicorn

    class GracefulServer(uvicorn.Server):
        #: Set when a signal asked the server to stop: a load it cut short is then no failure.
        signalled = False

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                host, port = listener.getsockname()[:2]
                shown = f"[{host}]" if listener.family == socket.AF_INET6 else host
                log.info("Listening on %s://%s:%d (Press CTRL+C to quit)", scheme, shown, port)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if not self.signalled:
                _exit_after(grace)
            self.signalled = True
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return GracefulServer(config)


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(model_path=args.model_path, runtime=args.runtime, host=args.host, port=args.port)
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings)


def _batch(args: argparse.Namespace) -> int:
    from scorer_core.batch.job import (
        BatchFailed,
        BatchOptions,
        print_progress,
        run_batch_job,
        stopped_by_signals,
    )
    from scorer_core.schema import ShapleyType

    overrides: dict[str, Any] = {"model_path": args.model_path, "runtime": args.runtime}
    if args.contributions:
        overrides["shapley_types_enabled"] = "ALL"  # asking for them on the command line enables them
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    spark = args.engine == "spark"
    options = BatchOptions(
        model_path=args.model_path,
        # Spark's paths may be URIs (s3a://bucket/x), which Path would mangle.
        input=args.input if spark else Path(args.input),
        output=args.output if spark else Path(args.output),
        runtime=args.runtime,
        id_column=args.id_column,
        keep_columns=tuple(c for c in (args.keep_columns or "").split(",") if c),
        contributions=ShapleyType(args.contributions) if args.contributions else ShapleyType.NONE,
        batch_rows=args.batch_rows,
        on_error=args.on_error,
    )
    if not spark and not Path(args.input).exists():  # before the model's seconds of loading
        raise ConfigurationError(f"Input '{args.input}' does not exist")
    # The model takes seconds to load, before the first progress line can say anything.
    print(f"Loading the model at '{args.model_path}' ...", file=sys.stderr, flush=True)
    try:
        with stopped_by_signals():  # SIGTERM, SIGHUP: the job's clean-up runs, as for Ctrl-C
            if spark:
                from scorer_core.batch.spark import SparkOptions, run_spark_job

                where = SparkOptions(args.spark_master, _spark_conf(args.spark_conf))
                summary = run_spark_job(settings, options, where)
            else:
                summary = run_batch_job(settings, options, print_progress())
    except BatchFailed as exc:
        print(
            f"\nscorer: error: {exc}; nothing was written (--on-error skip goes on past such rows)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as exc:
        print("\nscorer: stopped; nothing was written", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)  # the shell's status for the signal (SIGINT: 130)
    print(
        f"\nScored {summary.rows_read:,} rows in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s): "
        f"{summary.rows_written:,} written to {args.output}"
        + (
            f", {summary.rows_skipped:,} skipped (see {args.output}.errors.jsonl)"
            if summary.rows_skipped
            else ""
        ),
        file=sys.stderr,
    )
    return 0


def _spark_conf(pairs: list[str]) -> dict[str, str]:
    conf: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ConfigurationError(f"--spark-conf takes KEY=VALUE (a Spark setting), not {pair!r}")
        conf[key.strip()] = value
    return conf


def _plugins(args: argparse.Namespace) -> int:
    plugins: Plugins = load_plugins(load_settings())
    print(json.dumps([info.to_json() for info in plugins.describe()], indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorer", description=__doc__.split("\n")[0])
    version = f"scorer-core {__version__} (Python {platform.python_version()})"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a model over HTTP (the bundled demo if no path)")
    serve.add_argument(
        "model_path",
        nargs="?",
        type=Path,
        help="model file or directory (default: MODEL_PATH, else the demo model)",
    )
    serve.add_argument("--runtime", help="runtime name; detected from the model path when omitted")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1, SCORER_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080, SCORER_PORT)")
    serve.set_defaults(func=_serve)

    batch = commands.add_parser(
        "batch", help="score a file or directory of rows into another (docs/batch.md)"
    )
    batch.add_argument("model_path", type=Path, help="model file or directory")
    batch.add_argument("input", help="a .csv, .parquet or .jsonl file, or a directory of parts")
    batch.add_argument(
        "output", help="a .csv, .parquet or .jsonl file (a directory of parts with Spark), written at the end"
    )
    batch.add_argument("--runtime", help="runtime name; detected from the model path when omitted")
    batch.add_argument("--id-column", help="input column copied first into every output row")
    batch.add_argument("--keep-columns", help="comma-separated input columns copied after the id")
    batch.add_argument(
        "--contributions",
        choices=["ORIGINAL", "TRANSFORMED"],
        help="write Shapley contributions instead of predictions",
    )
    batch.add_argument("--batch-rows", type=int, default=10_000, help="rows per model call (default 10,000)")
    batch.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="rows that cannot be scored stop the job (fail) or go to OUTPUT.errors.jsonl (skip)",
    )
    batch.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="where to score: this process (local) or Apache Spark (spark; the [spark] extra)",
    )
    batch.add_argument(
        "--spark-master", help="Spark's master URL (default: spark-submit's, else local[*])"
    )
    batch.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, e.g. spark.executor.memory=4g (repeatable)",
    )
    batch.set_defaults(func=_batch)

    plugins = commands.add_parser("plugins", help="list installed plugins and their runtimes as JSON")
    plugins.set_defaults(func=_plugins)

    for entry_point in importlib.metadata.entry_points(group=COMMANDS_ENTRY_POINT_GROUP):
        try:
            entry_point.load()(commands)
        except Exception as exc:  # a broken add-on must not take `scorer serve` down with it
            print(
                f"scorer: warning: command '{entry_point.name}' ({entry_point.value}) failed to load: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. Arguments after a lone ``--`` are not parsed: they go to the command as
    ``args.passthrough`` (``scorer check MODEL -- -x`` hands ``-x`` to pytest)."""
    given = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in given:
        given, passthrough = given[: given.index("--")], given[given.index("--") + 1 :]
    args = _parser().parse_args(given)
    args.passthrough = passthrough
    try:
        return int(args.func(args))
    except ScorerError as exc:
        print(f"scorer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
