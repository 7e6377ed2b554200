from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conformance import start_server
from tests.conftest import plugin_env


def scorer(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_plugins_lists_runtimes_and_versions_as_json():
    result = scorer("plugins", env=plugin_env("echo_plugin"))
    assert result.returncode == 0, result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["echo_plugin"]["runtimes"] == ["echo-scorer"]
    assert listed["echo_plugin"]["hooks"] == ["scorer_register_runtimes"]


def test_serve_missing_path_is_a_clear_error(tmp_path):
    result = scorer("serve", str(tmp_path / "nope.probe"), env=plugin_env())
    assert result.returncode == 2
    assert result.stderr.strip() == f"scorer: error: Model path '{tmp_path / 'nope.probe'}' does not exist"


@pytest.mark.slow
def test_serve_uses_a_plugin_configured_path_and_names_its_variable(tmp_path):
    missing = tmp_path / "gone.probe"
    result = scorer("serve", env=plugin_env(PROBE_MODEL_PATH=str(missing)))
    assert result.returncode == 2
    assert result.stderr.strip() == f"scorer: error: PROBE_MODEL_PATH '{missing}' does not exist"
    model = tmp_path / "m.probe"
    model.write_text(json.dumps({"model_id": "from-probe-variable"}))
    with start_server(None, env=plugin_env(PROBE_MODEL_PATH=str(model)), record_headers=False) as target:
        assert target.get("/model/id").text == "from-probe-variable"


def test_serve_unknown_model_type_says_to_pass_runtime(tmp_path):
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\0")
    result = scorer("serve", str(model), env=plugin_env())
    assert result.returncode == 2
    assert "No installed runtime can load" in result.stderr and "pass --runtime" in result.stderr


def test_serve_bad_setting_is_a_clear_error(tmp_path):
    result = scorer("serve", env={**plugin_env(), "SCORING_CONCURRENCY": "many"})
    assert result.returncode == 2
    assert "SCORING_CONCURRENCY='many'" in result.stderr


@pytest.mark.slow
def test_serve_without_a_path_builds_and_serves_the_demo_once(tmp_path):
    env = plugin_env(SCORER_DEMO_MODEL="probe", SCORER_DEMO_DIR=str(tmp_path / "demo"))
    for first in (True, False):
        with start_server(None, env=env, record_headers=False) as target:
            assert target.get("/model/id").text == "probe-demo"
            log = target.server_log()
        assert ("Building the 'probe' demo model" in log) == first, "the demo must be built on first use only"
    assert (tmp_path / "demo" / "probe" / "demo.probe").is_file()


def test_unknown_demo_lists_the_available_ones(tmp_path):
    result = scorer("serve", env=plugin_env(SCORER_DEMO_MODEL="nope", SCORER_DEMO_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert "no demo model named 'nope'; available demo models: probe" in result.stderr


@pytest.mark.slow
def test_check_passes_a_conforming_model(probe_file):
    result = scorer("check", str(probe_file()), env=plugin_env(), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    output = result.stdout + result.stderr
    assert "Warning" not in output and "warning" not in output, "a clean check run prints no warning"


@pytest.mark.slow
def test_check_fails_a_model_that_drops_rows_and_says_why(probe_file):
    result = scorer("check", str(probe_file(behaviour="drop_row")), env=plugin_env(), timeout=300)
    assert result.returncode == 1
    assert "returned 0 rows for a request of 1 rows" in result.stdout


@pytest.mark.slow
def test_check_takes_options_after_the_model_and_pytest_arguments_after_a_lone_dash_dash(probe_file):
    model = str(probe_file())
    result = scorer(
        "check", model, "--runtime", "probe-scorer", "--", "-k", "Schema", env=plugin_env(), timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert " passed" in result.stdout and " deselected" in result.stdout


@pytest.mark.slow
def test_check_against_a_running_server_url(probe_file):
    with start_server(probe_file(), env=plugin_env(), record_headers=False) as target:
        result = scorer("check", "--url", target.base_url, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "header forwarding is observable only on a server the suite starts" in result.stdout


def test_plugins_prints_only_its_json_and_imports_no_model_framework():
    # Every installed plugin loads, as on a user's machine: none may import mlflow (whose
    # import prints a coloured UserWarning) or any other framework just to register itself.
    code = (
        "import json, sys\n"
        "from scorer_core.cli import main\n"
        "main(['plugins'])\n"
        "print(json.dumps(sorted(m for m in ('mlflow', 'torch', 'jpype', 'h2o', 'daimojo') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_flag_value_is_reported_as_the_flag_the_user_typed(probe_file):
    result = scorer("serve", str(probe_file()), "--port", "70000", env=plugin_env())
    assert result.returncode == 2
    assert result.stderr.strip().startswith("scorer: error: Invalid configuration: --port=70000: ")
    result = scorer("serve", str(probe_file()), env=plugin_env(SCORER_PORT="70000"))
    assert result.stderr.strip().startswith("scorer: error: Invalid configuration: SCORER_PORT='70000': ")


def test_a_port_in_use_is_reported_before_the_model_loads(probe_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = scorer("serve", str(probe_file(load_delay=30)), "--port", str(port), env=plugin_env())
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"scorer: error: Port {port} on 127.0.0.1 is already in use; choose another with --port or "
        "SCORER_PORT"
    )
    assert time.monotonic() - started < 20, "the model (30 s to load) must not be loaded first"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_a_stop_signal_ends_serve_with_status_0(probe_file, stop):
    with start_server(probe_file(), env=plugin_env(), record_headers=False) as target:
        assert target.post("/model/score", {"fields": ["x"], "rows": [["1"]]}).status == 200
        assert target.process is not None
        target.process.send_signal(stop)
        assert target.process.wait(timeout=30) == 0
        log = target.server_log()
        assert "Listening on http://127.0.0.1:" in log, "the line start-up failures are checked against"
        assert "Finished server process" in log


@pytest.mark.slow
def test_check_names_each_check_when_asked_and_on_a_terminal(probe_file):
    model = str(probe_file())
    asked = scorer("check", model, "--verbose", "--", "-k", "Schema", env=plugin_env(), timeout=300)
    assert asked.returncode == 0, asked.stdout[-3000:] + asked.stderr
    named = [line for line in asked.stdout.splitlines() if line.endswith("PASSED") or " PASSED " in line]
    assert named and all("::" in line for line in named), asked.stdout
    # On a terminal without the flag, the same list: run it on a pseudo-terminal.
    import pty

    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "scorer_core.cli", "check", model, "--", "-k", "Schema"],
        env={**os.environ, **plugin_env()}, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    ) as process:  # fmt: skip
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes with the process
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=300) == 0, shown.decode(errors="replace")[-3000:]
    os.close(leader)
    text = shown.decode(errors="replace")
    assert "PASSED" in text and "::" in text, text[-3000:]
    quiet = scorer("check", model, "--", "-k", "Schema", env=plugin_env(), timeout=300)  # piped: short
    assert quiet.returncode == 0 and "PASSED" not in quiet.stdout and " passed" in quiet.stdout


def test_version_names_the_package_and_python():
    import platform

    import scorer_core

    result = scorer("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"scorer-core {scorer_core.__version__} (Python {platform.python_version()})"


def serve_until_listening(model: str, env: dict[str, str], *args: str) -> str:
    """Start `scorer serve`, wait for its 'Listening on' line, stop it; its log so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scorer_core.cli", "serve", model, "--port", "0", *args],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert process.stderr is not None
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "Listening on" in line:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    log = "".join(lines)
    assert "Listening on" in log, log
    return log


@pytest.mark.slow
def test_start_up_line_names_the_version(probe_file):
    import scorer_core

    log = serve_until_listening(str(probe_file()), plugin_env())
    assert f"scorer-core {scorer_core.__version__} serving '" in log


@pytest.mark.slow
def test_a_passphrase_over_plain_http_on_a_public_interface_is_warned_about(probe_file):
    model = str(probe_file())
    warning = "SCORER_PASSPHRASE is set and the server listens on 0.0.0.0 over plain HTTP"
    log = serve_until_listening(model, plugin_env(SCORER_PASSPHRASE="s3cret"), "--host", "0.0.0.0")
    assert warning in log and "credentials travel in clear text" in log
    assert "s3cret" not in log
    quiet = serve_until_listening(model, plugin_env(SCORER_PASSPHRASE="s3cret"), "--host", "127.0.0.1")
    assert "clear text" not in quiet  # loopback: nothing crosses a network
    open_server = serve_until_listening(model, plugin_env(), "--host", "0.0.0.0")
    assert "clear text" not in open_server  # no credential to leak


def test_batch_with_a_missing_input_is_one_line_before_the_model_loads(probe_file, tmp_path):
    slow_model = str(probe_file(load_delay=30))  # a load this slow would show in the time taken
    started = time.monotonic()
    result = scorer("batch", slow_model, str(tmp_path / "nope.csv"), str(tmp_path / "out.csv"), env=plugin_env())
    assert result.returncode == 2
    assert result.stderr.strip() == f"scorer: error: Input '{tmp_path / 'nope.csv'}' does not exist"
    assert time.monotonic() - started < 25
    assert not (tmp_path / "out.csv").exists()


def test_batch_says_it_is_loading_the_model_before_the_first_progress_line(probe_file, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("x\n1\n2\n")
    model = probe_file()
    result = scorer("batch", str(model), str(source), str(tmp_path / "out.csv"), env=plugin_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"Loading the model at '{model}' ...\n")
    assert "Scored 2 rows" in result.stderr
