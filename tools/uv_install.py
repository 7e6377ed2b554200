"""``uv pip install``, choosing from the places pip is configured to choose from.

Why: the Makefile's installs are uv's (it resolves in seconds and links wheels from its cache,
where pip unpacked each one: 46 of a fresh clone's 69 s of install, uv about 5 warm). But uv reads
none of pip's configuration (``pip.conf``, ``PIP_*`` variables), and a machine's package indexes,
find-links folders, constraints and certificates live there: on this project's machines a CPU
build of torch lies in a find-links folder, and without it torch resolves to a multi-GB CUDA
build. So the settings pip reports (``pip config list``) are handed to uv as its own options.
Between several indexes uv then picks as pip does, the best version wherever it is
(``--index-strategy unsafe-best-match``), not the first index that has the project.

Usage: ``python tools/uv_install.py --python PYTHON [uv pip install's arguments]``, run with the
interpreter of the venv that holds ``uv`` (the Makefile's ``.venv``), or with ``UV`` naming the
``uv`` to run (the image's build, deploy/docker/install.sh, keeps uv out of the image's venv).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

#: pip's settings that say where packages come from, as uv's options. Each may hold several
#: values, separated by white space, as pip reads them.
OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
    "trusted-host": "--allow-insecure-host",
    "only-binary": "--only-binary",
    "no-binary": "--no-binary",
    # pip's "import" and "auto" use the keyring package in-process; uv has only the command.
    "keyring-provider": "--keyring-provider",
}
_KEYRING = {"auto": "subprocess", "import": "subprocess", "subprocess": "subprocess", "disabled": "disabled"}
#: pip's settings that uv takes from the environment instead.
VARIABLES = {
    "cert": "SSL_CERT_FILE",
    "client-cert": "SSL_CLIENT_CERT",
    "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
    "proxy": "HTTPS_PROXY",
}
#: pip's switches, as uv's.
SWITCHES = {"no-index": ["--no-index"], "pre": ["--prerelease", "allow"]}
#: ``pip config list``'s line: ``scope.key=`` and the value as Python's ``repr`` writes it (so a
#: value of several lines holds ``\n`` escapes, and one with a quote is in double quotes).
_LINE = re.compile(r"^(?P<scope>[^.]*)\.(?P<key>[\w-]+)=(?P<value>(?P<q>['\"]).*(?P=q))$")
_TRUE = {"1", "true", "yes", "on"}
#: Which of pip's scopes wins, as pip decides: ``PIP_*`` variables (scope ``:env:``) over the
#: files' ``[install]`` section over their ``[global]`` one. (``pip config list`` has merged the
#: files already; the order it lists scopes in changed between pip releases.)
_PRECEDENCE = {":env:": 2, "install": 1}


def pip_settings(python: str) -> list[tuple[str, str]]:
    """``(key, value)`` for each setting ``pip config list`` reports, the one pip obeys last for
    each key: from its files, or from ``PIP_*`` variables (its scope ``:env:``)."""
    listed = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    return settings_of(listed)


def settings_of(listed: str) -> list[tuple[str, str]]:
    """``pip config list``'s lines (``scope.key='value'``) as ``(key, value)``, the setting pip
    obeys placed last for each key."""
    found = []
    for line in listed.splitlines():
        match = _LINE.match(line.strip())
        if match is None or match["scope"] not in (":env:", "install", "global"):
            continue
        value = ast.literal_eval(match["value"])
        if isinstance(value, str) and value.strip():  # pip ignores an empty setting
            found.append((_PRECEDENCE.get(match["scope"], 0), match["key"], value))
    return [(key, value) for _, key, value in sorted(found, key=lambda setting: setting[0])]


def uv_arguments(settings: Iterable[tuple[str, str]]) -> tuple[list[str], dict[str, str]]:
    """uv's options and environment variables for pip's ``settings``."""
    by_key = dict(settings)  # the last word per key, as pip takes it
    options = ["--index-strategy", "unsafe-best-match"]
    # pip (since 24.2) trusts the system's certificate store; uv, unless told, only its own list.
    variables: dict[str, str] = {"UV_NATIVE_TLS": "true"}
    for key, value in by_key.items():
        if key == "keyring-provider":
            options += [OPTIONS[key], _KEYRING.get(value, "subprocess")]
        elif key in OPTIONS:
            for item in value.split():
                options += [OPTIONS[key], item]
        elif key in VARIABLES:
            variables[VARIABLES[key]] = value
        elif key in SWITCHES and value.lower() in _TRUE:
            options += SWITCHES[key]
    return options, variables


def main(argv: Sequence[str]) -> None:
    uv = Path(os.environ.get("UV") or Path(sys.executable).with_name("uv"))
    options, variables = uv_arguments(pip_settings(sys.executable))
    os.execve(str(uv), [str(uv), "pip", "install", *options, *argv], {**os.environ, **variables})


if __name__ == "__main__":
    main(sys.argv[1:])
