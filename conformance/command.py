"""``scorer check``: run the conformance suite against a model or a running server.

Registered under the entry-point group ``scorer_core.commands``; the core never imports it. The
suite runs in a child ``python -m pytest``, so that it starts from a clean interpreter (pytest
can then rewrite the suite's asserts, and nothing the CLI imported can change what it checks).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from scorer_core import ConfigurationError

__all__ = ["SUITES", "register"]

#: Each protocol's checks: a module of ``conformance/suite``.
SUITES = {"h2o": "test_conformance.py", "oip": "test_oip.py"}


def register(commands: Any) -> None:
    """Add ``check`` to the ``scorer`` command's sub-parsers."""
    check = commands.add_parser("check", help="run the conformance suite against a model or a server")
    check.add_argument("model_path", nargs="?", help="model file or directory to serve and check")
    check.add_argument("--url", help="check an already running server at this base URL instead")
    check.add_argument("--runtime", help="runtime name; detected from the model path when omitted")
    check.add_argument(
        "--protocol",
        choices=sorted(SUITES),
        default="h2o",
        help="which protocol's checks to run: H2O's MOJO REST contract (default) or the Open "
        "Inference Protocol (KServe V2), which any OIP server can be checked against",
    )
    check.add_argument(
        "--model-name",
        help="with --protocol oip: the model's name in /v2/models/<name> (a MODEL_PATH is served under it)",
    )
    check.add_argument(
        "--texts",
        metavar="JSON",
        help='with --protocol oip: a valid text per BYTES input, e.g. \'{"city": "Oslo"}\'',
    )
    shown = check.add_mutually_exclusive_group()
    shown.add_argument(
        "-v", "--verbose", action="store_true", default=None,
        help="list every check by name with its outcome (the default on a terminal)",
    )  # fmt: skip
    shown.add_argument(
        "-q", "--quiet", dest="verbose", action="store_false", help="a dot per check and the summary"
    )
    check.epilog = "Arguments after a lone -- go to pytest: scorer check MODEL -- -x -k Header"
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """The suite's exit status (pytest's: 0 when every check passed)."""
    if not (args.model_path or args.url):
        raise ConfigurationError("scorer check needs a MODEL_PATH or --url")
    if importlib.util.find_spec("pytest") is None:
        raise ConfigurationError(
            "scorer check needs pytest: install it with: pip install 'scorer-core[conformance]'"
        )
    if not args.url and not Path(args.model_path).exists():
        raise ConfigurationError(f"Model path '{args.model_path}' does not exist")
    target = ["--scorer-url", args.url] if args.url else ["--scorer-model", str(args.model_path)]
    if args.runtime:
        target += ["--scorer-runtime", args.runtime]
    protocol = getattr(args, "protocol", "h2o")
    if protocol != "oip" and (getattr(args, "model_name", None) or getattr(args, "texts", None)):
        raise ConfigurationError("--model-name and --texts go with --protocol oip")
    if getattr(args, "model_name", None):
        target += ["--oip-model-name", args.model_name]
    if getattr(args, "texts", None):
        target += ["--oip-texts", args.texts]
    extra = list(getattr(args, "passthrough", []))
    # On a terminal a person reads the result: each check by name says what was checked; piped
    # into a CI log, the short form unless asked.
    verbose = sys.stdout.isatty() if getattr(args, "verbose", None) is None else args.verbose
    spec = importlib.util.find_spec("conformance.suite")
    assert spec is not None and spec.submodule_search_locations
    suite_dir = Path(next(iter(spec.submodule_search_locations)))
    # The suite's own directory and an empty config, so that the caller's pytest settings (and
    # rootdir guessing from the model path) cannot change what the suite checks.
    with tempfile.TemporaryDirectory(prefix="scorer-check-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        command = [
            sys.executable, "-m", "pytest", str(suite_dir / SUITES[protocol]), "-c", str(ini),
            "--rootdir", str(suite_dir),
            "-p", "no:cacheprovider", "-v" if verbose else "-q", "-rfEs", *target, *extra,
        ]  # fmt: skip
        return subprocess.call(command)
