"""Where ``scorer batch`` writes: never over its input, however the paths are spelt; never over
someone else's ``OUTPUT.partial``; and nothing left behind when the job is stopped or dies.

The jobs run as the command runs them (``python -m scorer_core.cli batch``), in a process of
their own, so that exit statuses, signals and deaths are the real ones.
"""

from __future__ import annotations

import json
import os
import pty
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.jobs.job import BatchOptions, run_batch_job
from scorer_core.jobs.outputs import StagedFile
from tests.conftest import plugin_env, scorer_batch

SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}
CSV = "x\n1\n2\n3\n"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding the model (``m.probe``) and the input (``in.csv``), made the current
    one so that relative spellings are relative to it; plugins set up for jobs run in-process."""
    for name, value in plugin_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(plugin_env()["PYTHONPATH"].split(os.pathsep)[0])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.probe").write_text(json.dumps(SPEC))
    (tmp_path / "in.csv").write_text(CSV)
    return tmp_path


def listing(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, hidden ones included, with its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_an_output_spelt_as_the_input_is_refused_and_the_input_kept(work):
    before = listing(work)
    result = scorer_batch("m.probe", "in.csv", "./in.csv")
    assert result.returncode == 2, result.stderr
    assert (
        "scorer: error: the output 'in.csv' is the input 'in.csv': writing it would destroy the input"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert listing(work) == before


def spell(work: Path, case: str) -> tuple[str, str, str]:
    """(input, output, --on-error) for each way of naming the input as a file the job writes."""
    parts = work / "parts"
    parts.mkdir()
    (parts / "p0.csv").write_text(CSV)
    if case == "relative":
        return "in.csv", "in.csv", "fail"
    if case == "absolute and relative":
        return str(work / "in.csv"), "in.csv", "fail"
    if case == "dot-dot":
        return "in.csv", "parts/../in.csv", "fail"
    if case == "symlink":
        (work / "link.csv").symlink_to("in.csv")
        return "in.csv", "link.csv", "fail"
    if case == "input is a symlink to the output":
        (work / "link.csv").symlink_to("in.csv")
        return "link.csv", "in.csv", "fail"
    if case == "hard link":
        os.link(work / "in.csv", work / "hard.csv")
        return "in.csv", "hard.csv", "fail"
    if case == "hard link to a part":
        os.link(parts / "p0.csv", work / "hard.csv")
        return "parts", "hard.csv", "fail"
    if case == "inside the input directory":
        return "parts", "parts/out.csv", "fail"
    if case == "inside it through a link":
        (work / "alias").symlink_to("parts")
        return "parts", "alias/out.csv", "fail"
    if case == "side file is the input":
        (work / "o.csv.errors.jsonl").write_text('{"x": 1}\n')
        return "o.csv.errors.jsonl", "o.csv", "skip"
    if case == "side file is a part":
        (parts / "p1.jsonl").write_text('{"x": 1}\n')
        (parts / "p0.csv").unlink()
        (work / "o.csv.errors.jsonl").symlink_to("parts/p1.jsonl")
        return "parts", "o.csv", "skip"
    if case == "output is a directory":
        return "in.csv", "parts", "fail"
    raise AssertionError(case)


#: Each spelling, and what the refusal says.
CASES = {
    "relative": "is the input 'in.csv'",
    "absolute and relative": "is the input",
    "dot-dot": "the output 'parts/../in.csv' is the input 'in.csv'",
    "symlink": "the output 'link.csv' is the input 'in.csv'",
    "input is a symlink to the output": "the output 'in.csv' is the input 'link.csv'",
    "hard link": "the output 'hard.csv' is the input 'in.csv'",
    "hard link to a part": "the output 'hard.csv' is the input 'parts' or one of its parts",
    "inside the input directory": "the output 'parts/out.csv' is inside the input directory 'parts'",
    "inside it through a link": "the output 'alias/out.csv' is inside the input directory 'parts'",
    "side file is the input": "the side file of skipped rows 'o.csv.errors.jsonl' is the input",
    "side file is a part": "the side file of skipped rows 'o.csv.errors.jsonl' is the input 'parts' or one of its parts",
    "output is a directory": "the output 'parts' is a directory",
}


@pytest.mark.parametrize("case", CASES)
def test_no_spelling_of_the_input_is_written(work, case):
    source, output, on_error = spell(work, case)
    before = listing(work)
    options = BatchOptions(
        model_path=Path("m.probe"), input=Path(source), output=Path(output), on_error=on_error
    )
    with pytest.raises(ConfigurationError) as refused:
        run_batch_job(load_settings(), options)
    assert CASES[case] in str(refused.value) and "choose" in str(refused.value)
    assert listing(work) == before  # not a byte changed, nothing added, nothing taken


def test_an_unrelated_partial_file_is_never_touched(work):
    (work / "out.csv.partial").write_text("someone else's\n")
    result = scorer_batch("m.probe", "in.csv", "out.csv")
    assert result.returncode == 0, result.stderr
    assert (work / "out.csv.partial").read_text() == "someone else's\n"
    assert (work / "out.csv").read_text() == '"y"\n"2.0"\n"4.0"\n"6.0"\n'
    assert sorted(listing(work)) == ["in.csv", "m.probe", "out.csv", "out.csv.partial"]


@pytest.mark.parametrize("planted", ["out.csv.partial", "out.csv", "out.csv.errors.jsonl"])
def test_a_symlink_planted_where_the_job_writes_is_replaced_not_written_through(work, planted):
    """Someone who can write in the output's directory cannot make the job overwrite another
    file of the job's user by a link at a name the job writes."""
    victim = work / "victim.txt"
    victim.write_text("precious\n")
    (work / "in.csv").write_text("x\n1\nabc\n")  # one row skipped: the side file is written
    (work / planted).symlink_to(victim)
    assert scorer_batch("m.probe", "in.csv", "out.csv", "--on-error", "skip").returncode == 0
    assert victim.read_text() == "precious\n"
    assert (work / "out.csv").read_text() == '"y"\n"2.0"\n'
    assert not (work / "out.csv").is_symlink() and not (work / "out.csv.errors.jsonl").is_symlink()


def test_a_stale_side_file_goes_with_the_output_it_described(work):
    (work / "out.csv.errors.jsonl").write_text('{"row": 0, "error": "from an earlier job"}\n')
    assert scorer_batch("m.probe", "in.csv", "out.csv", "--on-error", "skip").returncode == 0
    assert sorted(listing(work)) == ["in.csv", "m.probe", "out.csv"]


@pytest.mark.parametrize("named", [False, True], ids=["unnamed file", "hidden named file"])
def test_a_stopped_job_in_process_leaves_nothing(work, monkeypatch, named):
    """Both ways of staging: Linux's unnamed file, and the fallback's hidden name taken
    exclusively (forced here, as on a file system without O_TMPFILE)."""
    if named:
        monkeypatch.setattr(StagedFile, "_unnamed", lambda self: None)
    (work / "out.csv.partial").write_text("someone else's\n")
    (work / "in.csv").write_text("x\n" + "1\nabc\n" * 25)
    before = listing(work)
    staged_names: list[str] = []

    def interrupt(summary) -> None:
        if summary.rows_read >= 20:
            staged_names.extend(name for name in listing(work) if name not in before)
            raise KeyboardInterrupt

    options = BatchOptions(
        model_path=Path("m.probe"),
        input=Path("in.csv"),
        output=Path("out.csv"),
        batch_rows=5,
        on_error="skip",
    )
    with pytest.raises(KeyboardInterrupt):
        run_batch_job(load_settings(), options, interrupt)
    assert listing(work) == before
    # While it ran: no name at all, or one hidden name each for the output and the side file.
    assert len(staged_names) == (2 if named else 0)
    assert all(
        name.startswith((".out.csv.", ".out.csv.errors.jsonl.")) and name.endswith(".partial")
        for name in staged_names
    )


def _no_core_files() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not leave a core file to find


def run_until_progress(
    args: list[object], rows_done: int, timeout: float = 120
) -> tuple[subprocess.Popen[bytes], int, list[bytes]]:
    """Start ``scorer batch`` with its stderr on a terminal, so that it rewrites its progress
    line after each chunk, and return once that line says ``rows_done`` rows are done."""
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "scorer_core.cli", "batch", *map(str, args)]
    job = subprocess.Popen(
        command,
        env={**os.environ, **plugin_env()},
        stdout=terminal,
        stderr=terminal,
        preexec_fn=_no_core_files,
    )
    os.close(terminal)
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while f"\r{rows_done} of about".encode() not in b"".join(seen):
        assert time.monotonic() < deadline, b"".join(seen).decode(errors="replace")
        try:
            if select.select([controller], [], [], 0.5)[0]:
                seen.append(os.read(controller, 65536))
        except OSError:  # the job has ended (the model may crash it right after the line)
            raise AssertionError(b"".join(seen).decode(errors="replace")) from None
    return job, controller, seen


def finish(job: subprocess.Popen[bytes], controller: int, seen: list[bytes], timeout: float = 60) -> str:
    """Everything the job wrote to its terminal once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "the job did not end"
        try:
            ready = select.select([controller], [], [], 0.5)[0]
            chunk = os.read(controller, 65536) if ready else b""
        except OSError:  # the terminal closed: the job has gone
            break
        seen.append(chunk)
        if not chunk and job.poll() is not None:
            break
    job.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(controller)
    return b"".join(seen).decode(errors="replace")


def stuck_job(
    work: Path, **misbehaviour: float
) -> tuple[subprocess.Popen[bytes], int, list[bytes], dict[str, bytes]]:
    """A job (``--on-error skip``) that has read 3 rows, skipped one, and then meets the
    probe model's ``misbehaviour`` on the 4th (``hang_on`` or ``crash_on``), with an unrelated
    ``out.csv.partial`` and an earlier job's side file beside it; and every file as it was
    before the job started."""
    (work / "m.probe").write_text(json.dumps({**SPEC, **misbehaviour}))
    (work / "in.csv").write_text("x\n1\nabc\n3\n99\n5\n")
    (work / "out.csv.partial").write_text("someone else's\n")
    (work / "out.csv.errors.jsonl").write_text('{"row": 7, "error": "an earlier job\'s"}\n')
    before = listing(work)
    args = ["m.probe", "in.csv", "out.csv", "--batch-rows", "1", "--on-error", "skip"]
    return (*run_until_progress(args, 3), before)


@pytest.mark.slow
def test_sigterm_stops_the_job_and_leaves_nothing(work):
    job, controller, seen, before = stuck_job(work, hang_on=99)
    job.send_signal(signal.SIGTERM)
    said = finish(job, controller, seen)
    assert job.returncode == 128 + signal.SIGTERM, said
    assert "scorer: stopped; nothing was written" in said and "Traceback" not in said
    assert listing(work) == before


@pytest.mark.slow
def test_a_job_killed_or_crashed_by_its_model_leaves_nothing(work):
    """As the OOM killer would end it, or a model crashing in native code does: no clean-up
    runs, and there is still nothing to find, since the output had no name yet."""
    job, controller, seen, before = stuck_job(work, hang_on=99)
    job.send_signal(signal.SIGKILL)
    finish(job, controller, seen)
    assert job.returncode == -signal.SIGKILL
    assert listing(work) == before

    job, controller, seen, before = stuck_job(work, crash_on=99)  # the probe model segfaults
    said = finish(job, controller, seen)
    assert job.returncode == -signal.SIGSEGV, said
    assert listing(work) == before
