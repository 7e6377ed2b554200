"""``uv pip install``, choosing from the places pip is configured to choose from.

Why: the Makefile's installs are uv's (it resolves in seconds and links wheels from its cache,
where pip unpacked each one: 46 of a fresh clone's 69 s of install, uv about 5 warm). But uv reads
none of pip's configuration (``pip.conf``, ``PIP_*`` variables), and a machine's package indexes,
find-links folders, constraints and certificates live there: on this project's machines a CPU
build of torch lies in a find-links folder, and without it torch resolves to a multi-GB CUDA
build. So the settings pip reports (``pip config list``) are handed to uv as its own options.
Between several indexes uv then picks as pip does, the best version wherever it is
(``--index-strategy unsafe-best-match``), not the first index that has the project.

Usage: ``python tools/uv_install.py [--keep-built-wheels DIR] --python PYTHON [uv pip install's
arguments]``, run with the interpreter of the venv that holds ``uv`` (the Makefile's ``.venv``),
or with ``UV`` naming the ``uv`` to run (the image's build, deploy/docker/install.sh, keeps uv out
of the image's venv).

``--keep-built-wheels DIR``: the wheels of the projects uv had to build from a registry's source
distribution are kept under DIR, in a folder per interpreter and platform, which later installs
take them from (``--find-links``). Why: uv keeps what it built only as long as the index's answer
for the source distribution is fresh, and an index that sends no caching headers (this project's
machines reach PyPI through such a proxy) makes every install download and build it again.
pyspark's is 434 MB and took 20 s to build, at every fresh clone's install, and each build left
about a gigabyte in uv's cache (50 GB here before this). pip keeps a wheel it built by the
download's hash, so it builds such a project once: that is what this restores. Each wheel is made
once, after uv's install, by the target's pip (from pip's own caches when pip built it before);
failing to keep one fails nothing. The folder is a package source for every later install: it is
made private, and not used where another user could write to it. Deleting it resets it.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import tempfile
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
#: How uv reports a distribution it built: ``Built NAME==VERSION`` from an index, ``Built NAME @
#: URL`` from a path or URL (a project's own, never kept).
_BUILT = re.compile(r"^\s*Built (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;@]+)\s*$")


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
    variables: dict[str, str] = {"UV_SYSTEM_CERTS": "true"}
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


def environment(variables: dict[str, str], inherited: dict[str, str]) -> dict[str, str]:
    """uv's environment: ``inherited`` with ``variables`` over it (pip's settings win, as they do
    for pip), except the certificate store's switch where the user set it under either of its
    names (``UV_NATIVE_TLS`` is uv's older one)."""
    mine = dict(variables)
    if "UV_NATIVE_TLS" in inherited or "UV_SYSTEM_CERTS" in inherited:
        mine.pop("UV_SYSTEM_CERTS", None)
    return {**inherited, **mine}


def built_from_source(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``(name, version)`` of each distribution uv's output says it built from an index."""
    return [(m["name"], m["version"]) for m in map(_BUILT.match, lines) if m is not None]


def _normalized(name: str) -> str:
    """A project's name as PEP 503 compares names (a wheel's file spells it with ``_``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def has_wheel(directory: Path, name: str, version: str) -> bool:
    for path in directory.glob("*.whl"):
        parts = path.name.split("-")
        if len(parts) >= 5 and _normalized(parts[0]) == _normalized(name) and parts[1] == version:
            return True
    return False


#: What tells one interpreter's wheels from another's: ``cpython-311 linux-x86_64``.
_INTERPRETER_TAG = "import sys, sysconfig; print(sys.implementation.cache_tag, sysconfig.get_platform())"


def _others_may_change(path: Path) -> bool:
    """Whether a user other than this one (or root) owns ``path``, or others may write to it."""
    facts = path.stat()
    return facts.st_uid not in (os.getuid(), 0) or bool(facts.st_mode & 0o022)


def wheelhouse_for(directory: Path, python: str) -> Path | None:
    """The folder under ``directory`` for ``python``'s wheels (one per interpreter and platform, so
    that one Python's compiled wheel never stands for another's), made private to this user; None,
    with a warning, where it cannot be made or another user could have put wheels in it (every
    install would take them: it is a package source)."""
    try:
        tag = subprocess.run(
            [python, "-c", _INTERPRETER_TAG], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        if len(tag) != 2:
            raise OSError(f"{python} did not say which interpreter it is")
        folder = directory / "-".join(tag)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        shared = [path for path in (directory, folder) if _others_may_change(path)]
    except (OSError, subprocess.SubprocessError) as error:
        print(f"uv_install: not keeping built wheels in {directory}: {error}", file=sys.stderr)
        return None
    if shared:
        print(f"uv_install: not keeping built wheels in {shared[0]}: another user owns it or may write to it",
              file=sys.stderr)  # fmt: skip
        return None
    return folder


def run_bounded(command: list[str], timeout: float) -> tuple[int, str]:
    """``command``'s status and standard error; it and every process it started (pip's
    ``--python`` runs pip again under the target) are killed when ``timeout`` passes, or when
    this process is interrupted meanwhile."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=timeout)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process.returncode, stderr


def keep_wheels(built: Iterable[tuple[str, str]], directory: Path, python: str) -> None:
    """Put a wheel of each of ``built`` in ``directory`` unless one is there, made by pip for
    ``python``: in a folder of its own, then moved in whole, so that an install reading ``directory``
    meanwhile never sees half a wheel. The install has succeeded by then: a failure here only
    means the next one builds again, and is said so."""
    for name, version in built:
        try:
            if has_wheel(directory, name, version):
                continue
            print(f"Keeping a wheel of {name}=={version} in {directory}, so that later installs need not "
                  "build it (once) ...", file=sys.stderr, flush=True)  # fmt: skip
            with tempfile.TemporaryDirectory(dir=directory, prefix=".building-") as building:
                code, stderr = run_bounded(
                    # pip's --python: built for the target interpreter, whether or not it has a pip.
                    [sys.executable, "-m", "pip", "--python", python, "wheel", "--no-deps", "--quiet",
                     "--disable-pip-version-check", "--retries", "1", "--wheel-dir", building,
                     f"{name}=={version}"],
                    timeout=900,
                )  # fmt: skip
                wheels = list(Path(building).glob("*.whl"))
                if code != 0 or not wheels:
                    raise OSError(stderr.strip()[-500:] or f"pip wheel exited {code}")
                for wheel in wheels:
                    os.replace(wheel, directory / wheel.name)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"uv_install: could not keep a wheel of {name}=={version} in {directory} "
                  f"(the next install builds it again): {error}", file=sys.stderr)  # fmt: skip


def split_keep_option(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """``--keep-built-wheels DIR`` (or ``=DIR``), wherever it is, and the arguments meant for uv."""
    args, rest, directory = list(argv), [], None
    while args:
        arg = args.pop(0)
        if arg == "--keep-built-wheels":
            value = args.pop(0) if args else ""
        elif arg.startswith("--keep-built-wheels="):
            value = arg.partition("=")[2]
        else:
            rest.append(arg)
            continue
        if not value:
            raise SystemExit("uv_install: --keep-built-wheels needs a folder")
        directory = Path(value)
    return directory, rest


def target_python(args: Sequence[str]) -> str:
    """The interpreter uv installs into (``--python``, ``-p``), or the one running this (the
    Makefile and the image's build always name it)."""
    for i, arg in enumerate(args):
        if arg in ("--python", "-p") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--python="):
            return arg.partition("=")[2]
    return sys.executable


def run_passing_output_on(command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """``command``'s exit status (128 + N for a signal, as a shell reports it) and its standard
    error, which is passed on line by line as it comes (the Makefile shows progress from it).
    SIGINT and SIGTERM reach it too, and it is waited for."""
    process = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1
    )
    assert process.stderr is not None
    forward = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    lines = []
    try:
        for line in process.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            lines.append(line)
        code = process.wait()
    except KeyboardInterrupt:  # the terminal sent it uv too, but perhaps only this process got it
        process.send_signal(signal.SIGINT)
        process.communicate()  # read to its end, so that uv never blocks on a full pipe
        code = process.returncode
    finally:
        signal.signal(signal.SIGTERM, forward)
    return (128 - code if code < 0 else code), lines


def main(argv: Sequence[str]) -> int:
    uv = Path(os.environ.get("UV") or Path(sys.executable).with_name("uv"))
    options, variables = uv_arguments(pip_settings(sys.executable))
    env = environment(variables, dict(os.environ))
    directory, args = split_keep_option(argv)
    python = target_python(args)
    wheelhouse = wheelhouse_for(directory, python) if directory is not None else None
    if wheelhouse is None:
        os.execve(str(uv), [str(uv), "pip", "install", *options, *args], env)
    code, lines = run_passing_output_on(
        [str(uv), "pip", "install", *options, "--find-links", str(wheelhouse), *args], env
    )
    if code == 0:
        keep_wheels(built_from_source(lines), wheelhouse, python)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
