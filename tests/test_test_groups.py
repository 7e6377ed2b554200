"""The root conftest.py's scheduling, run for real: pytest-xdist on a small copy of the suite's
layout, with that conftest.py, and each test writing down which worker ran it and when.

If xdist or pytest changed so that the groups were no longer honoured, two Ray clusters could
start at once in ``make test`` (and Serve's fixed port collide) only now and then; this fails
every time instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

RECORDER = """
import json, os, time
from pathlib import Path

def _record(name):
    with open(os.environ["GROUPS_LOG"], "a") as log:
        log.write(json.dumps([name, os.environ["PYTEST_XDIST_WORKER"], time.monotonic()]) + "\\n")
"""


def _module(name: str, tests: int) -> str:
    body = "".join(
        f"\ndef test_{i}():\n    time.sleep(0.2)\n    _record({name!r} + '::{i}')\n" for i in range(tests)
    )
    return RECORDER + body


def test_shared_groups_run_on_one_worker_and_first(tmp_path: Path) -> None:
    layout = {
        "tests/test_batch_spark.py": 3,
        "integrations/ray/tests/test_ray_serve.py": 3,
        "integrations/ray/tests/test_serve_cli.py": 3,
        **{f"tests/test_other_{i}.py": 2 for i in range(6)},
    }
    for path, tests in layout.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(_module(path, tests))
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --import-mode=importlib\n")
    log = tmp_path / "groups.jsonl"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "3", "--dist", "loadscope"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GROUPS_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == sum(layout.values())
    worker = {name: who for name, who, _ in records}

    ray = [name for name in worker if "/ray/" in name]
    assert len({worker[name] for name in ray}) == 1, f"the Ray modules ran on several workers: {worker}"
    spark = [name for name in worker if "spark" in name]
    assert len({worker[name] for name in spark}) == 1, worker
    assert worker[ray[0]] != worker[spark[0]], "the two long groups should start on two workers"
    others = [name for name in worker if "other" in name]
    for i in range(6):
        module = [name for name in others if f"other_{i}." in name]
        assert len({worker[name] for name in module}) == 1, f"a module was split: {worker}"

    # Sent first: on their workers, the long groups' tests ran before any other test.
    for group in (ray, spark):
        who = worker[group[0]]
        ran = [name for name, w, _ in sorted(records, key=lambda r: r[2]) if w == who]
        assert ran[: len(group)] == sorted(group, key=ran.index), ran
        assert set(ran[: len(group)]) == set(group), f"{who} ran another test before its long group: {ran}"


def test_a_serial_test_outside_the_makefiles_list_fails_the_run_naming_it(tmp_path: Path) -> None:
    """make test's second phase collects only SERIAL_MODULES: a serial test elsewhere would run in
    neither phase, so a run that collects it gets a failing test naming the module."""
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: alone\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_listed.py").write_text(
        "import pytest\n\n@pytest.mark.serial\ndef test_a():\n    pass\n"
    )
    (tmp_path / "tests" / "test_stray.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.serial\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n"
    )
    (tmp_path / "tests" / "test_plain.py").write_text("def test_d():\n    pass\n")

    def run(listed: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "SCORER_TESTS_EXEC_SERVERS": "1"}
        if listed is not None:
            env["SCORER_SERIAL_MODULES"] = listed
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for workers in (["-n", "2"], []):  # as the first phase runs it, and as a developer might
        failed = run("tests/test_listed.py", "-m", "not serial", *workers)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "tests marked serial in tests/test_stray.py, which the Makefile's SERIAL_MODULES" in failed.stdout
        assert "1 failed, 1 passed" in failed.stdout, failed.stdout
    assert "1 passed" in run("tests/test_listed.py tests/test_stray.py", "-m", "not serial").stdout
    assert "3 passed" in run("tests/test_listed.py tests/test_stray.py", "-m", "serial").stdout
    assert "2 passed" in run(None, "-m", "serial", "tests/test_stray.py").stdout  # a developer's own run
