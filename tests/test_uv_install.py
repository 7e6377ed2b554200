"""tools/uv_install.py: uv gets the package sources pip is configured with (uv reads no pip.conf)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
        "UV_NATIVE_TLS": "true",
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
