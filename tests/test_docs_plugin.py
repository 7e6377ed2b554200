"""docs/writing_plugins.md works as written: its plugin, pyproject.toml and commands, run for real.

The files are taken from the page itself, the package is built and installed into a scratch
directory with the environment's pip, and a real server serves a model through it, first
registered by ``SCORER_EXTRA_PLUGINS`` and then found through its entry point.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from conformance._http import request
from conformance.target import free_port, wait_ready
from tests.conftest import INSTALLED_PLUGINS

ROOT = Path(__file__).parent.parent
GUIDE = (ROOT / "docs" / "writing_plugins.md").read_text()
BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.DOTALL)


def command_lines() -> list[str]:
    return [line for block in blocks("bash") for line in block.splitlines() if line.strip()]


def test_the_guide_has_one_plugin_and_one_installable_pyproject():
    (plugin,) = [b for b in blocks("python") if "scorer_register_runtimes" in b]
    (pyproject,) = blocks("toml")
    assert plugin.strip() == (ROOT / "tests" / "plugins" / "echo_plugin.py").read_text().strip()
    parsed = tomllib.loads(pyproject)
    assert parsed["build-system"]["build-backend"] == "setuptools.build_meta"
    assert parsed["project"]["version"]
    assert parsed["project"]["entry-points"]["scorer_core.plugins"] == {"echo": "echo_plugin"}


def test_the_readme_promise_of_30_lines_is_true():
    plugin = (ROOT / "tests" / "plugins" / "echo_plugin.py").read_text().strip()
    assert "in 30 lines" in (ROOT / "README.md").read_text()
    assert len(plugin.splitlines()) <= 30


@contextmanager
def serving(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run a documented ``scorer serve`` line (its --port swapped for a free one) until it is ready."""
    port = free_port()
    argv = [str(port) if previous == "--port" else a for previous, a in zip(["", *argv[:-1]], argv, strict=True)]
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, 120, process=process)  # raises, naming the exit code, if never ready
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_documented(line: str, cwd: Path, env: dict[str, str]) -> list[str]:
    """A documented command as argv, with ../.venv the test's environment; asserts it is documented."""
    assert line in command_lines(), f"not a command from the guide: {line}"
    argv = shlex.split(line.split("#")[0])
    assignments = [a for a in argv if re.match(r"^[A-Z_]+=", a)]
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        env[name] = value
    argv = [a.replace("../.venv/bin/", f"{BIN}/") for a in argv[len(assignments) :]]
    return argv


@pytest.mark.slow
def test_the_guides_plugin_serves_before_and_after_packaging(tmp_path):
    (plugin,) = [b for b in blocks("python") if "scorer_register_runtimes" in b]
    (pyproject,) = blocks("toml")
    project = tmp_path / "scorer-echo"
    project.mkdir()
    (project / "echo_plugin.py").write_text(plugin)
    (project / "pyproject.toml").write_text(pyproject)
    (project / "model.echo").write_text("{}\n")
    # Only the guide's plugin: every installed one off, so the server cannot be serving another.
    base_env = {**os.environ, "SCORER_DISABLE_PLUGINS": INSTALLED_PLUGINS}
    base_env.pop("PYTHONPATH", None)
    rows = {"fields": ["x"], "rows": [["1.5"], ["-2"]]}

    # Before packaging: the documented SCORER_EXTRA_PLUGINS line.
    assert "cd scorer-echo" in command_lines()
    (serve_line,) = [line for line in command_lines() if "SCORER_EXTRA_PLUGINS" in line]
    env = dict(base_env)
    argv = run_documented(serve_line, project, env)
    assert argv[1:3] == ["serve", "model.echo"]
    with serving(argv, project, env) as base_url:  # run as written, from scorer-echo/
        reply = request(base_url, "POST", "/model/score", rows)
        assert reply.status == 200, reply.text
        assert reply.json()["score"] == [["1.5"], ["-2.0"]]

    # Packaged: `pip install .` into a scratch target that the server then has on its path.
    target_dir = tmp_path / "site"
    (install_line,) = [line for line in command_lines() if line.endswith("pip install .")]
    argv = run_documented(install_line, project, dict(base_env))
    argv += ["--quiet", "--no-deps", "--no-build-isolation", "--target", str(target_dir)]
    subprocess.run(argv, cwd=project, check=True, env=base_env, timeout=300)
    installed_env = {**base_env, "PYTHONPATH": str(target_dir)}

    (plugins_line,) = [line for line in command_lines() if "scorer plugins" in line]
    listed = subprocess.run(
        run_documented(plugins_line, project, {}), cwd=tmp_path, env=installed_env,
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    echo = {p["name"]: p for p in json.loads(listed.stdout)}["echo"]
    assert echo["distribution"] == "scorer-echo" and echo["runtimes"] == ["echo-scorer"]
    assert listed.stderr == "", "scorer plugins must print nothing but its JSON"

    (packaged_serve,) = [line for line in command_lines() if line.startswith("../.venv/bin/scorer serve")]
    with serving(run_documented(packaged_serve, project, {}), project, dict(installed_env)) as base_url:
        reply = request(base_url, "POST", "/model/score", rows)
        assert reply.status == 200, reply.text
        assert reply.json()["score"] == [["1.5"], ["-2.0"]]
