"""tools/uv_install.py: uv gets the package sources pip is configured with (uv reads no pip.conf)."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import time
import venv
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("uv_install", ROOT / "tools" / "uv_install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


uv_install = _tool()


def test_pips_sources_become_uvs_options_and_the_best_version_is_taken_from_any_index():
    options, variables = uv_install.uv_arguments(
        [
            ("find-links", "/opt/wheels"),
            ("extra-index-url", "file:///opt/a/simple file:///opt/b/simple"),
            ("constraint", "/etc/xdg/pip/constraints.txt"),
            ("cert", "/etc/ssl/certs/ca-certificates.crt"),
            ("default-timeout", "180"),
            ("disable-pip-version-check", "1"),  # nothing to uv
        ]
    )
    assert options == [
        "--index-strategy",
        "unsafe-best-match",
        "--find-links",
        "/opt/wheels",
        "--extra-index-url",
        "file:///opt/a/simple",
        "--extra-index-url",
        "file:///opt/b/simple",
        "--constraint",
        "/etc/xdg/pip/constraints.txt",
    ]
    assert variables == {
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_HTTP_TIMEOUT": "180",
        "UV_SYSTEM_CERTS": "true",
    }


def test_a_later_setting_overrides_an_earlier_one_as_in_pip():
    """pip lists its files, then its PIP_* variables, which win."""
    options, _ = uv_install.uv_arguments(
        [("index-url", "https://mirror.example/simple"), ("index-url", "https://other.example/simple")]
    )
    assert options[2:] == ["--index-url", "https://other.example/simple"]


def test_switches_are_passed_only_when_on():
    on, _ = uv_install.uv_arguments([("no-index", "true"), ("pre", "1")])
    assert on[2:] == ["--no-index", "--prerelease", "allow"]
    off, _ = uv_install.uv_arguments([("no-index", "false"), ("pre", "0")])
    assert off == ["--index-strategy", "unsafe-best-match"]


def test_the_settings_are_read_from_pip_itself_environment_variables_included(monkeypatch, tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nfind-links = /from/the/file\nextra-index-url = file:///x/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", "/from/the/environment")
    settings = uv_install.pip_settings(sys.executable)
    assert ("extra-index-url", "file:///x/simple") in settings
    options, _ = uv_install.uv_arguments(settings)
    found = [options[i + 1] for i, option in enumerate(options) if option == "--find-links"]
    assert found == ["/from/the/environment"]


def test_variables_win_over_files_in_whatever_order_pip_lists_them():
    """pip 23 lists ``:env:`` first, pip 25 last: pip obeys the variable either way."""
    for listing in (
        ":env:.find-links='/env'\nglobal.find-links='/file'\ninstall.timeout='9'\nglobal.timeout='5'\n",
        "global.timeout='5'\ninstall.timeout='9'\nglobal.find-links='/file'\n:env:.find-links='/env'\n",
    ):
        settings = uv_install.settings_of(listing)
        assert dict(settings) == {"find-links": "/env", "timeout": "9"}, settings


def test_values_of_several_lines_quotes_and_empty_ones_are_read_as_pip_reads_them(monkeypatch, tmp_path):
    """pip's documented style puts each of several values on a line of its own; ``pip config
    list`` writes them with escapes. An empty variable is no setting at all, for pip."""
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\nfind-links =\n    /wheels/one\n    /wheels/two\n"
        "index-url = https://it's.example/simple\nkeyring-provider = import\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_INDEX_URL", "")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    options, _ = uv_install.uv_arguments(uv_install.pip_settings(sys.executable))
    pairs = list(zip(options[::2], options[1::2], strict=True))
    assert ("--find-links", "/wheels/one") in pairs and ("--find-links", "/wheels/two") in pairs
    assert ("--index-url", "https://it's.example/simple") in pairs
    assert ("--keyring-provider", "subprocess") in pairs


def test_pips_settings_win_over_the_environment_but_the_users_certificate_switch_is_kept():
    ours = {"UV_SYSTEM_CERTS": "true", "SSL_CERT_FILE": "/from/pip.conf"}
    inherited = {"SSL_CERT_FILE": "/from/the/shell", "HOME": "/home/u"}
    assert uv_install.environment(ours, inherited) == {**inherited, **ours}  # as pip obeys its own
    assert uv_install.environment(ours, {"UV_SYSTEM_CERTS": "false"})["UV_SYSTEM_CERTS"] == "false"
    # uv's older name for it: setting the new one beside it would override the user's choice.
    kept = uv_install.environment(ours, {"UV_NATIVE_TLS": "false"})
    assert kept["UV_NATIVE_TLS"] == "false" and "UV_SYSTEM_CERTS" not in kept


def test_the_keep_option_is_found_wherever_it_is_and_the_rest_goes_to_uv():
    split = uv_install.split_keep_option
    assert split(["--keep-built-wheels", "/w", "--python", "p", "x"]) == (Path("/w"), ["--python", "p", "x"])
    assert split(["--python", "p", "--keep-built-wheels=/w", "x"]) == (Path("/w"), ["--python", "p", "x"])
    assert split(["--python", "p", "x"]) == (None, ["--python", "p", "x"])
    for incomplete in (["--python", "p", "--keep-built-wheels"], ["--keep-built-wheels=", "x"]):
        with pytest.raises(SystemExit, match="needs a folder"):
            split(incomplete)
    assert uv_install.target_python(["--quiet", "--python", "/v/bin/python", "x"]) == "/v/bin/python"
    assert uv_install.target_python(["-p", "/v/bin/python", "x"]) == "/v/bin/python"


def test_a_bounded_command_is_killed_with_what_it_started_when_its_time_runs_out(tmp_path):
    """pip --python runs pip again in a child: the time limit must end both."""
    grandchild = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(grandchild)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        uv_install.run_bounded([sys.executable, "-c", script], timeout=2)
    pid = int(grandchild.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the child the command started outlived its time limit"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_kept_wheel_is_recognised_by_its_normalised_name_and_exact_version(tmp_path):
    (tmp_path / "zope.interface-6.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    (tmp_path / "py_spark-4.0.5-py2.py3-none-any.whl").write_bytes(b"")
    assert uv_install.has_wheel(tmp_path, "zope-interface", "6.0")
    assert uv_install.has_wheel(tmp_path, "Py.Spark", "4.0.5")
    assert not uv_install.has_wheel(tmp_path, "py-spark", "4.0.50")
    assert not uv_install.has_wheel(tmp_path, "pyspark", "4.0.5")


def test_only_distributions_built_from_an_index_are_listed_as_built():
    output = [
        "Resolved 197 packages in 5.69s\n",
        "   Building pyspark==4.0.5\n",
        "      Built pyspark==4.0.5\n",
        "      Built gcloud==0.18.3\n",
        "      Built scorer-mlflow @ file:///work/main/plugins/mlflow\n",
        "Prepared 2 packages in 20.83s\n",
    ]
    assert uv_install.built_from_source(output) == [("pyspark", "4.0.5"), ("gcloud", "0.18.3")]


#: A PEP 517 backend inside the source distribution, with no build requirement, so that uv and
#: pip build it with no index at all.
BACKEND = textwrap.dedent(
    """
    import base64, hashlib, os, zipfile

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        name = "tiny_sdist_only-1.0-py3-none-any.whl"
        files = {
            "tiny_sdist_only/__init__.py": b"VERSION = '1.0'\\n",
            "tiny_sdist_only-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: tiny-sdist-only\\nVersion: 1.0\\n",
            "tiny_sdist_only-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        }
        record = []
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
            for path, data in files.items():
                wheel.writestr(path, data)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                record.append(f"{path},sha256={digest},{len(data)}")
            record.append("tiny_sdist_only-1.0.dist-info/RECORD,,")
            wheel.writestr("tiny_sdist_only-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
        return name
    """
)


def sdist(directory: Path) -> None:
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        '[project]\nname = "tiny-sdist-only"\nversion = "1.0"\n',
        "PKG-INFO": "Metadata-Version: 2.1\nName: tiny-sdist-only\nVersion: 1.0\n",
        "backend.py": BACKEND,
    }
    with tarfile.open(directory / "tiny_sdist_only-1.0.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"tiny_sdist_only-1.0/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))


def test_a_dependency_built_from_source_is_built_once_then_taken_from_the_kept_wheel(tmp_path):
    """Real uv and pip, a source distribution on a local index folder: the first install builds
    it and keeps its wheel; an install without uv's cache then takes that wheel instead of
    building again."""
    sources = tmp_path / "sources"
    sources.mkdir()
    sdist(sources)
    kept = tmp_path / "wheels"
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nno-index = true\nfind-links = {sources}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))},
        "PIP_CONFIG_FILE": str(config),
        "PIP_FIND_LINKS": str(sources),
        "PIP_NO_INDEX": "1",
        "PIP_NO_CACHE_DIR": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
    }

    def install(target: str, *options: str) -> subprocess.CompletedProcess[str]:
        venv.create(tmp_path / target, with_pip=False)
        return subprocess.run(
            [sys.executable, str(ROOT / "tools" / "uv_install.py"), "--keep-built-wheels", str(kept),
             "--python", str(tmp_path / target / "bin" / "python"), *options, "tiny-sdist-only==1.0"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    first = install("first")
    assert first.returncode == 0, first.stderr
    assert "Built tiny-sdist-only==1.0" in first.stderr
    (folder,) = kept.iterdir()  # this interpreter's
    assert folder.name == f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    assert f"Keeping a wheel of tiny-sdist-only==1.0 in {folder}" in first.stderr
    assert [path.name for path in folder.iterdir()] == ["tiny_sdist_only-1.0-py3-none-any.whl"]
    assert folder.stat().st_mode & 0o077 == 0
    again = install("again", "--no-cache")
    assert again.returncode == 0, again.stderr
    assert "Built" not in again.stderr and "Keeping" not in again.stderr
    assert list((tmp_path / "again").glob("lib/python*/site-packages/tiny_sdist_only/__init__.py"))
    # A folder others may write to is no package source: the install goes on without it.
    folder.chmod(0o777)
    shared = install("shared", "--no-cache")
    assert shared.returncode == 0, shared.stderr
    assert "another user owns it or may write to it" in shared.stderr
    assert "Built tiny-sdist-only==1.0" in shared.stderr
    folder.chmod(0o700)
    # A failed install's status is uv's, and nothing is kept.
    failed = install("failed", "tiny-sdist-only==9.9")
    assert failed.returncode != 0 and "Keeping" not in failed.stderr
