"""The ``scorer`` command: ``serve`` a model, score files in a ``batch``, list ``plugins``, and
commands that packages add.

Commands beyond these three come from the entry-point group ``scorer_core.commands`` (the
conformance suite adds ``scorer check`` that way), so the core never imports them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scorer_core import __version__
from scorer_core.config.logs import configure_logging
from scorer_core.config.plugins import Plugins, load_plugins
from scorer_core.config.settings import Settings, load_settings, removed_env_var_warnings
from scorer_core.errors import ConfigurationError, ScorerError

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


def serve(settings: Settings) -> int:
    """Serve the configured model until SIGTERM/SIGINT; 0 after a clean stop, 1 if the model
    failed to load. Configuration errors are raised before the server starts listening."""
    from scorer_core.server.hosting import (
        GracefulServer,
        bind_listener,
        exit_past_lingering_threads,
        uvicorn_config,
    )
    from scorer_core.server.served import served_model

    _startup_warnings(settings)
    listener = bind_listener(settings.host, settings.port)
    try:
        server: GracefulServer | None = None

        def stop_on_load_failure() -> None:
            # Ends server.run() normally, so that we can exit 1 (a signal would end it as killed).
            if server is not None:
                server.should_exit = True

        settings.tls()  # a bad certificate or key is reported before the model is looked for
        served = served_model(settings, on_load_failure=stop_on_load_failure)
        app, host = served.app, served.host
        server = GracefulServer(uvicorn_config(app, settings), listener, settings.shutdown_grace)
    except BaseException:
        listener.close()
        raise
    log.info("scorer-core %s serving '%s' with runtime '%s'", __version__, served.path, served.runtime)
    server.run(sockets=[listener])
    code = 0
    if host.error is not None and not server.signalled:
        print(f"scorer: error: the model failed to load: {host.error}", file=sys.stderr)
        code = 1
    call_age = app.oldest_call_age()
    exit_past_lingering_threads(code, settings.shutdown_grace, call_age)
    return code


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(model_path=args.model_path, runtime=args.runtime, host=args.host, port=args.port)
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings)


def _batch(args: argparse.Namespace) -> int:
    from scorer_core.jobs.job import (
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
                from scorer_core.jobs.spark import SparkOptions, run_spark_job

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
        nargs="?",  # a string, as typed: Path would turn a URI's s3://bucket into s3:/bucket
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
    # BatchOptions.batch_rows's value, written here so that the CLI does not import the job early.
    batch.add_argument("--batch-rows", type=int, default=50_000, help="rows per model call (default 50,000)")
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
    batch.add_argument("--spark-master", help="Spark's master URL (default: spark-submit's, else local[*])")
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
