"""The README's first command (`make serve`) installs everything the README then tells users to run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent


def recipe(target: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, flags=re.MULTILINE)
    assert match, f"no {target} target"
    return match.group(1)


def test_make_serve_installs_what_scorer_check_needs():
    assert "install" in re.search(r"^serve:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert "install: $(STAMP_SERVE)" in (ROOT / "Makefile").read_text()
    assert "'.[conformance]'" in recipe("$(STAMP_SERVE)")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("pytest") for requirement in extras["conformance"])
    assert "scorer check" in (ROOT / "README.md").read_text()


def fake_checkout(tmp_path: Path) -> Path:
    """The files the Makefile reads, and a venv whose python only records the commands it gets
    (the install's, through tools/uv_install.py), answering as uv does."""
    checkout = tmp_path / "checkout"
    checkout.mkdir(parents=True)
    (checkout / "Makefile").write_text((ROOT / "Makefile").read_text())
    makefile = (ROOT / "Makefile").read_text()
    projects = [".", *re.search(r"^PLUGINS := (.*)$", makefile, re.MULTILINE).group(1).split()]
    projects += re.search(r"^INTEGRATIONS := (.*)$", makefile, re.MULTILINE).group(1).split()
    for project in projects:
        (checkout / project).mkdir(parents=True, exist_ok=True)
        (checkout / project / "pyproject.toml").write_text("[project]\n")
    for package in ("scorer_core/wire", "h2o_scorer_core", "conformance"):
        (checkout / package).mkdir(parents=True, exist_ok=True)
        (checkout / package / "__init__.py").write_text("")
    (checkout / "scorer_core/wire/_rows.c").write_text("")
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> "{checkout}/calls"\necho "Installed 1 package in 1ms"\necho " + x==1"\n')
    python.chmod(0o755)
    return checkout


def make(checkout: Path, target: str) -> list[str]:
    """Runs one target; returns the installs it ran (not the venv python's other runs, such as the
    check of its setuptools, or pip installing uv into a new venv)."""
    calls = checkout / "calls"
    calls.unlink(missing_ok=True)
    subprocess.run(["make", "-s", target], cwd=checkout, check=True, capture_output=True, timeout=60)
    ran = calls.read_text().splitlines() if calls.exists() else []
    return [call for call in ran if call.startswith("tools/uv_install.py ")]


def test_the_venv_gets_the_setuptools_that_pyproject_toml_builds_with():
    """Editable installs build with the venv's setuptools (no isolated build environment), so the
    Makefile's BUILD_REQUIREMENT must be pyproject.toml's, and its check the same version."""
    makefile = (ROOT / "Makefile").read_text()
    requirement = re.search(r"^BUILD_REQUIREMENT := (.*)$", makefile, re.MULTILINE).group(1)
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"] == [requirement]
    minimum = tuple(int(part) for part in requirement.removeprefix("setuptools>=").split("."))
    assert f"< {minimum}" in makefile, minimum
    assert "$(addprefix --no-build-isolation-package ,$(OWN_DISTRIBUTIONS))" in makefile


def test_our_projects_are_named_for_the_installer_as_their_pyproject_toml_names_them(tmp_path):
    """Each is built without isolation and rebuilt at every install (uv would otherwise skip an
    editable project whose pyproject.toml has not changed, leaving an edited native module or a
    new module's link out), both by distribution name: a name that drifts would do neither."""
    makefile = (ROOT / "Makefile").read_text()
    named = re.search(r"^OWN_DISTRIBUTIONS := (.*)$", makefile, re.MULTILINE).group(1).split()
    projects = [".", *re.search(r"^PLUGINS := (.*)$", makefile, re.MULTILINE).group(1).split()]
    projects += re.search(r"^INTEGRATIONS := (.*)$", makefile, re.MULTILINE).group(1).split()
    names = [tomllib.loads((ROOT / p / "pyproject.toml").read_text())["project"]["name"] for p in projects]
    assert sorted(named) == sorted(names)
    (call,) = make(fake_checkout(tmp_path), "install")
    for name in named:
        assert f"--no-build-isolation-package {name} " in call
        assert f"--reinstall-package {name} " in call


def test_installs_keep_the_wheels_they_built_in_the_users_cache(tmp_path, monkeypatch):
    """Shared by every checkout, under XDG_CACHE_HOME where the user set it (tools/uv_install.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for target in ("install", "install-all"):
        (call,) = make(fake_checkout(tmp_path / target), target)
        assert call.startswith(f"tools/uv_install.py --keep-built-wheels {tmp_path}/cache/scorer-core/wheels --python ")


def test_make_serve_installs_the_core_and_the_mlflow_plugin_only(tmp_path):
    """The demo is an MLflow model: torch, h2o and daimojo (about 2 GB) come with install-all or test."""
    (call,) = make(fake_checkout(tmp_path), "install")
    requested = call[call.index(" -e ") :]  # what is installed, after the installer's options
    assert requested == " -e .[conformance] -e plugins/mlflow", call
    for heavy in ("torch", "h2o3_mojo", "dai_mojo", "hydrogen_torch", "integrations/ray"):
        assert heavy not in requested
    (call,) = make(fake_checkout(tmp_path / "all"), "install-all")
    for everything in ("plugins/h2o3_mojo", "plugins/dai_mojo", "plugins/hydrogen_torch", "integrations/ray"):
        assert everything in call


def age_the_stamp(checkout: Path) -> None:
    """Date the install's stamp 10 s back, so that a file written next is newer than it whatever
    the file system's clock tick (a file written in the same tick as the stamp is not)."""
    stamp = checkout / ".venv" / ".installed-serve"
    then = time.time() - 10
    os.utime(stamp, (then, then))


def test_an_install_is_skipped_until_something_it_reads_changes(tmp_path):
    checkout = fake_checkout(tmp_path)
    assert len(make(checkout, "install")) == 1
    assert make(checkout, "install") == []  # nothing changed: no pip at all
    age_the_stamp(checkout)
    (checkout / "plugins/mlflow/pyproject.toml").write_text("[project]\nname = 'changed'\n")
    assert len(make(checkout, "install")) == 1
    assert make(checkout, "install") == []
    (checkout / "scorer_core/wire/__init__.py").write_text("x = 1\n")  # an edit: the link still holds
    assert make(checkout, "install") == []
    (checkout / "scorer_core/wire/new_module.py").write_text("")  # a new module needs a new link
    assert len(make(checkout, "install")) == 1
    (checkout / "scorer_core/wire/_rows.c").write_text("/* changed */\n")  # the native decoder rebuilt
    assert len(make(checkout, "install")) == 1
    age_the_stamp(checkout)
    (checkout / "scorer_core/wire/_tensors.c").write_text("")  # a native module of its own
    assert len(make(checkout, "install")) == 1
    assert make(checkout, "install") == []


def test_install_output_shows_progress_and_a_failure_shows_the_installers_own_words(tmp_path):
    checkout = fake_checkout(tmp_path)
    shown = subprocess.run(["make", "install"], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "Installing scorer-core and the MLflow plugin" in shown.stdout
    assert "  Installed 1 package in 1ms\n  + x==1\n" in shown.stdout
    (checkout / ".venv/bin/python").write_text('#!/bin/sh\necho "error: no matching distribution for y"\nexit 1\n')
    (checkout / "pyproject.toml").write_text("[project]\nname = 'changed'\n")
    failed = subprocess.run(["make", "install"], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0
    assert "error: no matching distribution for y" in failed.stdout
    again = subprocess.run(["make", "install"], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert "error: no matching distribution for y" in again.stdout  # a failed install is not marked done


def test_the_native_decoder_is_built_at_install_not_tracked():
    tracked = subprocess.run(["git", "ls-files", "scorer_core/wire"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.returncode == 0
    assert "_rows.c" in tracked.stdout and "_tensors.c" in tracked.stdout
    assert ".so" not in tracked.stdout
    assert "scorer_core/wire/*.so" in (ROOT / ".gitignore").read_text()


def test_the_readme_says_which_install_brings_what_make_serve_does_not():
    readme = (ROOT / "README.md").read_text()
    serve_installs = re.search(r"^SERVE_PLUGINS := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert serve_installs.split() == ["plugins/mlflow"]
    for line in readme.splitlines():
        if ".venv/bin/serve run" in line:  # Ray Serve's CLI comes with integrations/ray
            assert "make install-all" in line, line
    assert "`make install-all`" in readme.split("## Serving your own model")[0], "the install section says it"


def test_a_checkout_without_its_native_modules_built_says_how_to_build_them():
    for missing in ("scorer_core.wire._rows", "scorer_core.wire._tensors"):
        script = f"import sys; sys.modules[{missing!r}] = None; import scorer_core.wire.oip"
        ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert ran.returncode != 0
        assert "native modules" in ran.stderr and "make install" in ran.stderr, ran.stderr
