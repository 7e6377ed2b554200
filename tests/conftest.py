"""Shared fixtures: real servers on free ports, serving test runtimes from tests/plugins/."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from conformance import ScorerTarget, start_server

PLUGINS_DIR = Path(__file__).parent / "plugins"
#: Every plugin installed in this environment: core tests switch them all off and load only theirs.
INSTALLED_PLUGINS = ",".join(
    sorted(ep.name for ep in importlib.metadata.entry_points(group="scorer_core.plugins"))
)


def plugin_env(extra_plugins: str = "probe_plugin", **env: str) -> dict[str, str]:
    """Environment for a server process that loads test plugins and no installed ones."""
    path = os.pathsep.join(p for p in (str(PLUGINS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "SCORER_EXTRA_PLUGINS": extra_plugins,
        "SCORER_DISABLE_PLUGINS": INSTALLED_PLUGINS,
        **env,
    }


def scorer_batch(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``scorer batch ARGS`` in a child process that loads the test plugins only."""
    command = [sys.executable, "-m", "scorer_core.cli", "batch", *map(str, args)]
    return subprocess.run(
        command, env={**os.environ, **plugin_env()}, capture_output=True, text=True, timeout=timeout
    )


def probe_model_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]) -> Path:
    """A probe model file of ``spec`` that this process can load too (batch jobs run in it)."""
    for name, value in plugin_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(plugin_env()["PYTHONPATH"].split(os.pathsep)[0])
    path = tmp_path / "m.probe"
    path.write_text(json.dumps(spec))
    return path


def deep_directory(parent: Path, length: int = 150) -> Path:
    """A new directory under ``parent`` whose path is ``length`` bytes long (one more when
    ``parent`` is one byte short of it): deep enough that a Unix socket's path in it cannot fit the
    kernel's 107 bytes."""
    path = parent
    while len(os.fsencode(path)) < length:
        left = length - len(os.fsencode(path)) - 1  # one byte for the separator
        # The last name takes what is left; earlier ones leave it more than one byte.
        path = path / ("d" * (max(left, 1) if left <= 64 else 32))
    path.mkdir(parents=True)
    assert length <= len(os.fsencode(path)) <= length + 1, path
    return path


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true: tests wait on the event itself, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:g} s"
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """Live child processes of ``pid``, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def is_forkserver(pid: int) -> bool:
    """Whether ``pid`` is a forkserver (``scorer_core.execution.workers.forkserver``): a server's,
    which forks its workers (SCORER_WORKER_FORKSERVER), or the suite's."""
    try:
        return b"_forkserver_main.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def workers_of(server: int) -> list[int]:
    """The server's live worker processes: its children, or the children of the forkserver that
    is its child (a forked worker's command line is its forkserver's)."""
    found = []
    for child in children(server):
        found += children(child) if is_forkserver(child) else [child]
    return sorted(found)


def dead(pid: int) -> bool:
    """Whether ``pid`` has exited: a zombie, or gone. A process still exiting is neither (its
    /proc entry may fail to read then, which made children() drop it while it still held its
    socket)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def model_calls(target: ScorerTarget) -> int:
    """Model calls that have started so far (the recording plugin logs each as it begins)."""
    return len(target.seen_headers())


@pytest.fixture
def probe_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a `.probe` model spec (see tests/plugins/probe_plugin.py) and return its path."""

    def write(**spec: Any) -> Path:
        path = tmp_path / f"model-{len(list(tmp_path.glob('*.probe')))}.probe"
        path.write_text(json.dumps(spec))
        return path

    return write


@pytest.fixture
def probe_server(probe_file: Callable[..., Path]) -> Callable[..., AbstractContextManager[ScorerTarget]]:
    """Start a real server for a probe model: ``with probe_server(spec..., env={...}) as target``."""

    @contextmanager
    def run(
        env: dict[str, str] | None = None, record_headers: bool = True, **spec: Any
    ) -> Iterator[ScorerTarget]:
        with start_server(
            probe_file(**spec), env=plugin_env(**(env or {})), record_headers=record_headers
        ) as target:
            yield target

    return run
