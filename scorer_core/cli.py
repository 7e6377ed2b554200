"""The ``scorer`` command: ``serve`` a model, list ``plugins``, ``check`` a model against the contract."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from scorer_core.errors import ConfigurationError, ScorerError
from scorer_core.plugins import Plugins, load_plugins
from scorer_core.settings import Settings, load_settings, removed_env_var_warnings

__all__ = ["configure_logging", "main", "resolve_model", "serve"]

log = logging.getLogger("scorer_core")
_DEMO_MARKER = ".scorer-demo-path"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper() if level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _startup_warnings(settings: Settings) -> None:
    for message in removed_env_var_warnings():
        log.warning(message)
    for message in settings.header_forwarding.warnings():
        log.warning(message)


def build_demo(settings: Settings, plugins: Plugins) -> tuple[Path, str]:
    """Build (once) and return the demo model named by ``SCORER_DEMO_MODEL``, with its runtime."""
    demos = plugins.demo_models()
    demo = demos.get(settings.demo_model)
    if demo is None:
        available = ", ".join(sorted(demos)) or "none (install scorer-mlflow for the iris demo)"
        raise ConfigurationError(
            f"No model path given and no demo model named '{settings.demo_model}'; "
            f"available demo models: {available}. Pass a model path or set MODEL_PATH"
        )
    target = settings.demo_dir / demo.name
    marker = target / _DEMO_MARKER
    if not marker.is_file():
        log.info("Building the '%s' demo model under %s (once): %s", demo.name, target, demo.description)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{demo.name}-", dir=target.parent))
        try:
            built = demo.build(staging)
            relative = built.relative_to(staging)
            (staging / _DEMO_MARKER).write_text(str(relative))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / marker.read_text().strip(), demo.runtime


def resolve_model(settings: Settings, plugins: Plugins) -> tuple[Path, str]:
    """The model path to serve and the runtime to load it with; errors say how to fix them."""
    source = "Model path"
    runtime: str | None
    if settings.model_path is None:
        configured = plugins.configured_model()
        if configured is None:
            path, runtime_name = build_demo(settings, plugins)
            return path, settings.runtime or runtime_name
        path, source = configured.path.expanduser(), configured.source
        runtime = settings.runtime or configured.runtime
    else:
        path, runtime = settings.model_path.expanduser(), settings.runtime
    if not path.exists():
        raise ConfigurationError(f"{source} '{path}' does not exist")
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"{source} '{path}' is not readable by this user")
    return path, plugins.select_runtime(path, runtime).name


def serve(settings: Settings, *, wrap_runtime: str | None = None) -> int:
    """Serve the configured model until SIGTERM/SIGINT; 1 if the model failed to load.

    ``wrap_runtime`` (``module:attr``, importable in worker processes too) names a callable that
    subclasses the selected runtime: the conformance suite records headers with it.
    """
    import uvicorn

    from scorer_core.app import ModelHost, create_app
    from scorer_core.model import ServedModel, load_model
    from scorer_core.workers import load_in_workers
    from scorer_core.workers.pool import resolve_wrapper

    _startup_warnings(settings)
    plugins = load_plugins(settings)
    path, runtime_name = resolve_model(settings, plugins)
    runtime_cls = plugins.select_runtime(path, runtime_name)
    log.info(
        "Serving '%s' with runtime '%s' on http://%s:%d",
        path,
        runtime_cls.name,
        settings.host,
        settings.port,
    )

    workers = (
        runtime_cls.preferred_batch_workers if settings.batch_workers is None else settings.batch_workers
    )
    log.info("Model calls run in %s", f"{workers} worker processes" if workers else "the server process")

    def load() -> ServedModel:
        if workers:
            return load_in_workers(runtime_cls.name, path, settings, workers, wrap_runtime=wrap_runtime)
        cls = resolve_wrapper(wrap_runtime)(runtime_cls) if wrap_runtime else runtime_cls
        return load_model(cls, path, settings)

    host = ModelHost(load)
    server: uvicorn.Server | None = None

    def stop_on_load_failure() -> None:
        # Ends server.run() normally, so that we can exit 1 (a signal would end it as killed).
        if server is not None:
            server.should_exit = True

    app = create_app(settings, host, on_load_failure=stop_on_load_failure)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.log_level in ("debug", "trace"),
            timeout_graceful_shutdown=30,
        )
    )
    server.run()
    if host.error is not None:
        print(f"scorer: error: the model failed to load: {host.error}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(model_path=args.model_path, runtime=args.runtime, host=args.host, port=args.port)
    configure_logging(settings.log_level)
    return serve(settings)


def _plugins(args: argparse.Namespace) -> int:
    settings = load_settings()
    plugins = load_plugins(settings)
    print(json.dumps([info.to_json() for info in plugins.describe()], indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        import pytest
    except ImportError:
        raise ConfigurationError(
            "scorer check needs pytest: install it with: pip install 'scorer-core[conformance]'"
        ) from None
    target = ["--scorer-url", args.url] if args.url else ["--scorer-model", str(args.model_path)]
    if args.runtime:
        target += ["--scorer-runtime", args.runtime]
    if not args.url and not Path(args.model_path).exists():
        raise ConfigurationError(f"Model path '{args.model_path}' does not exist")
    import conformance

    # Run in the suite's own directory with an empty config, so the caller's pytest settings
    # (and rootdir guessing from the model path) cannot change what the suite checks.
    suite_dir = Path(conformance.__file__).parent / "suite"
    with tempfile.TemporaryDirectory(prefix="scorer-check-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        argv = [
            str(suite_dir),
            "-c",
            str(ini),
            "--rootdir",
            str(suite_dir),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
            *target,
            *args.pytest_args,
        ]
        return int(pytest.main(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorer", description=__doc__)
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

    plugins = commands.add_parser("plugins", help="list installed plugins and their runtimes as JSON")
    plugins.set_defaults(func=_plugins)

    check = commands.add_parser("check", help="run the conformance suite against a model or a server")
    check.add_argument("model_path", nargs="?", help="model file or directory to serve and check")
    check.add_argument("--url", help="check an already running server at this base URL instead")
    check.add_argument("--runtime", help="runtime name; detected from the model path when omitted")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments after --")
    check.set_defaults(func=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check" and not (args.model_path or args.url):
        parser.error("check needs a MODEL_PATH or --url")
    if getattr(args, "pytest_args", None) and args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    try:
        return int(args.func(args))
    except ScorerError as exc:
        print(f"scorer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
