"""scorer_core's HTTP API on Ray Serve replicas, for Ray's own CLI and config files:

    serve run scorer_ray:build model_path=/models/m num_replicas=2

Each replica runs the app ``scorer serve`` runs (``scorer_core.server.served``): the same
request path, batching (never across different forwarded header values), admission, executors
and deployment prefix, with the model loaded once, before the replica takes traffic. Ray Serve
adds what one process cannot: replicas on many machines, autoscaling, and replacing a replica
that died. See docs/scaling.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from scorer_core.config.settings import Settings, load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.server.served import ServedModel, served_model

__all__ = ["DEPLOYMENT_OPTIONS", "build"]

log = logging.getLogger("scorer_ray")


def _count(value: Any) -> int | str:
    return "auto" if value == "auto" else int(value)


def _mapping(value: Any) -> dict[str, Any]:
    """A mapping from a config file, or JSON on the command line (``serve run`` passes strings)."""
    if isinstance(value, Mapping):
        return dict(value)
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError("expected a JSON object")
    return parsed


#: Ray Serve's deployment options that ``build`` passes through, with how a string is read.
DEPLOYMENT_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "name": str,
    "num_replicas": _count,
    "max_ongoing_requests": int,
    "max_queued_requests": int,
    "autoscaling_config": _mapping,
    "ray_actor_options": _mapping,
    "health_check_period_s": float,
    "health_check_timeout_s": float,
    "graceful_shutdown_timeout_s": float,
    "graceful_shutdown_wait_loop_s": float,
}
#: Requests past a replica's capacity that Serve still hands it, for our admission to refuse
#: with 503 and Retry-After (a cheap answer) rather than have them wait in Serve's queue.
OVERFLOW_ANSWERED = 64

#: The model to serve; everything else about it comes from the replicas' environment
#: (``SCORER_*``, ``H2O_SCORER_FORWARD_HEADERS``, ...), as for ``scorer serve``.
SCORER_OPTIONS = {"model_path", "runtime"}


def build(args: Mapping[str, Any]) -> Any:
    """The Ray Serve application serving ``args["model_path"]`` (``serve run scorer_ray:build
    model_path=... [runtime=...] [num_replicas=N] [any of DEPLOYMENT_OPTIONS]``).

    The configuration is checked here, in the process that deploys, so that a typo fails the
    deploy with one line instead of replicas that crash and restart in a loop."""
    from ray import serve

    unknown = sorted(set(args) - DEPLOYMENT_OPTIONS.keys() - SCORER_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"scorer_ray:build got unknown argument(s) {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(SCORER_OPTIONS | DEPLOYMENT_OPTIONS.keys()))} "
            "(the model's settings come from the replicas' environment)"
        )
    options: dict[str, Any] = {"name": "scorer"}
    for key, read in DEPLOYMENT_OPTIONS.items():
        if key in args:
            try:
                options[key] = read(args[key])
            except ValueError as exc:
                raise ConfigurationError(f"scorer_ray:build argument {key}={args[key]!r}: {exc}") from None
    model_path = str(args["model_path"]) if args.get("model_path") else None
    runtime = str(args["runtime"]) if args.get("runtime") else None
    settings = _settings(model_path, runtime)
    _refuse_replica_only_settings(settings)
    served_model(settings)  # the model, its runtime and every setting checked; nothing loaded
    # Our admission (SCORING_CONCURRENCY, SCORER_QUEUE_SIZE) answers overload with 503 and
    # Retry-After, as scorer serve does: each replica takes more than it admits, so that the
    # overflow meets that answer, and Serve's own queue in front is bounded too. (Serve's
    # default of 5 in flight would cap batching; its default queue has no bound.)
    capacity = settings.scoring_concurrency + settings.queue_size
    options.setdefault("max_ongoing_requests", capacity + OVERFLOW_ANSWERED)
    options.setdefault("max_queued_requests", settings.queue_size)
    deployment = serve.deployment(**options)(_replica_class(model_path, runtime))
    return deployment.bind()


def _refuse_replica_only_settings(settings: Settings) -> None:
    """Refuse the settings that would make each replica act on its own where the deployment must
    act as one: checked where Serve runs the builder, and again in each replica, whose
    environment (``runtime_env.env_vars``) may differ from the deploying process's."""
    for setting, is_set in (
        ("SCORER_ADMIN_PASSPHRASE", settings.admin_passphrase is not None),
        ("SCORER_MODEL_WATCH", settings.model_watch),
    ):
        # /admin/model would replace the model of whichever replica took the request, and the
        # watch each replica's at its own moment: Serve's redeploy (a new config) replaces them all.
        if is_set:
            raise ConfigurationError(
                f"{setting} is set, but under Ray Serve a replacement would reach each replica on "
                "its own; replace the model with a new Serve deployment config instead"
            )
    if settings.grpc_port is not None:
        # Each replica would bind the same port: the second on a node fails and restarts in a
        # loop, and Serve's proxies, which spread the load, would not be in front of any of them.
        raise ConfigurationError(
            f"SCORER_GRPC_PORT is set ({settings.grpc_port}), but under Ray Serve every replica "
            "would listen on that port itself, past Serve's proxies; serve the Open Inference "
            "Protocol over HTTP through Serve (/v2/...), or gRPC with scorer serve"
        )


def _settings(model_path: str | None, runtime: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if model_path is not None:
        overrides["model_path"] = model_path  # as given: a URI (s3://...) stays one
    if runtime is not None:
        overrides["runtime"] = runtime
    return load_settings(**overrides)


#: The model this replica process serves (one replica per Ray actor process).
_served: ServedModel | None = None


def _replica_app(model_path: str | None, runtime: str | None) -> Any:
    """Runs on each replica as it starts: the app, with its model loaded before it returns, so
    that Serve sends no request to a replica that cannot answer it yet."""
    global _served
    settings = _settings(model_path, runtime)
    _refuse_replica_only_settings(settings)
    _served = served = served_model(settings)
    served.host.load()
    log.info("Replica serving '%s' with runtime '%s'", served.path, served.runtime)
    return served.app


def _replica_problem() -> str | None:
    """Why this replica cannot serve (``/healthz``'s 500), or ``None``. Module-level, so that
    the replica class (pickled by value, with copies of the globals it names) calls this one and
    reads this module's ``_served``."""
    return _served.app.stuck() if _served is not None else "the model is not loaded"


def _replica_class(model_path: str | None, runtime: str | None) -> type:
    from ray import serve

    def app() -> Any:
        return _replica_app(model_path, runtime)

    @serve.ingress(app)
    class ScorerReplica:
        def check_health(self) -> None:
            """Serve's health check: what fails ``/healthz`` (a stuck model call, workers that
            could not be replaced) makes Serve replace this replica."""
            problem = _replica_problem()
            if problem is not None:
                raise RuntimeError(problem)

    return ScorerReplica
