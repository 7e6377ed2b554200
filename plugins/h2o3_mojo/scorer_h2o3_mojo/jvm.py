"""The in-process JVM: where the genmodel classes come from, the batch helper, and starting jpype.

genmodel (``hex.genmodel``) ships inside the ``h2o`` package's ``h2o.jar`` on PyPI, so a plain
``pip install`` brings it; ``H2O_GENMODEL_JAR`` points at another jar (for example Maven's
``h2o-genmodel.jar``) instead. ``ColumnBatchScorer.java`` is this plugin's own helper that scores a
whole column batch inside Java. It is compiled once per machine with ``javac`` into a cache keyed
by the source and the jar; images without a JDK run ``python -m scorer_h2o3_mojo.jvm`` at build
time, where a JDK is present, and keep the printed directory (or point ``SCORER_H2O3_HELPER_DIR``
at it).

jpype can start one JVM per process, with a class path fixed at start, so this module starts it
once and every model in the process shares it; each worker process starts its own.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

from scorer_core import ConfigurationError
from scorer_h2o3_mojo.settings import H2O3Settings

__all__ = ["HELPER_CLASS", "genmodel_jar", "helper_classes", "java_options", "start_jvm"]

HELPER_CLASS = "scorer_h2o3_mojo.ColumnBatchScorer"
_HELPER_SOURCE = "ColumnBatchScorer.java"
_lock = threading.Lock()


def genmodel_jar() -> Path:
    """The jar holding ``hex.genmodel``: ``H2O_GENMODEL_JAR``, else the one inside the ``h2o`` package."""
    configured = H2O3Settings.load().genmodel_jar
    if configured is not None:
        jar = configured.expanduser()
        if not jar.is_file():
            raise ConfigurationError(f"H2O_GENMODEL_JAR '{jar}' is not a file")
        return jar
    try:
        package = resources.files("h2o")
    except ModuleNotFoundError:
        raise ConfigurationError(
            "h2o3-mojo-scorer needs the genmodel classes: install the 'h2o' package (its h2o.jar "
            "carries them) or set H2O_GENMODEL_JAR to an h2o-genmodel jar"
        ) from None
    jar = Path(str(package)) / "backend" / "bin" / "h2o.jar"
    if not jar.is_file():
        raise ConfigurationError(f"The installed 'h2o' package has no {jar}; set H2O_GENMODEL_JAR")
    return jar


def java_options() -> list[str]:
    """JVM options from ``JAVA_OPTS``, which H2O's Java scorer was started with (``-Xmx``, ``-D...``)."""
    return H2O3Settings.load().jvm_options


def _javac() -> str:
    java_home = H2O3Settings.load().java_home
    candidates = [str(java_home / "bin" / "javac")] if java_home is not None else []
    found = shutil.which("javac")
    if found:
        candidates.append(found)
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    raise ConfigurationError(
        "h2o3-mojo-scorer compiles its small Java batch helper once per machine and needs javac "
        "for it: install a JDK (for example openjdk-17-jdk-headless), or run "
        "'python -m scorer_h2o3_mojo.jvm' where a JDK is present and set SCORER_H2O3_HELPER_DIR to "
        "the directory it prints"
    )


def helper_classes(jar: Path) -> Path:
    """A directory holding the compiled helper; compiled on first use, then reused from the cache."""
    settings = H2O3Settings.load()
    if settings.helper_dir is not None:
        directory = settings.helper_dir.expanduser()
        if not (directory / "scorer_h2o3_mojo" / "ColumnBatchScorer.class").is_file():
            raise ConfigurationError(
                f"SCORER_H2O3_HELPER_DIR '{directory}' holds no scorer_h2o3_mojo/ColumnBatchScorer.class"
            )
        return directory
    source = resources.files("scorer_h2o3_mojo").joinpath("java", _HELPER_SOURCE).read_bytes()
    stat = jar.stat()
    key = hashlib.sha256(source + f"{jar.resolve()}:{stat.st_size}".encode()).hexdigest()[:16]
    target = settings.cache_root() / key
    if (target / "scorer_h2o3_mojo" / "ColumnBatchScorer.class").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile into a private directory and rename it into place, so that worker processes
    # starting together never see half-written classes.
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        (staging / _HELPER_SOURCE).write_bytes(source)
        result = subprocess.run(
            [_javac(), "--release", "11", "-d", str(staging), "-cp", str(jar), str(staging / _HELPER_SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ConfigurationError(
                f"Compiling h2o3-mojo-scorer's Java helper against {jar} failed: {result.stderr.strip()}"
            )
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another process won the race; its classes are identical
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def start_jvm() -> None:
    """Start the process's JVM with genmodel and the helper on its class path (once)."""
    import jpype

    with _lock:
        if jpype.isJVMStarted():
            try:
                jpype.JClass(HELPER_CLASS)
            except TypeError:
                raise ConfigurationError(
                    "A JVM was already started in this process without h2o3-mojo-scorer's class path; "
                    "jpype cannot restart it"
                ) from None
            return
        jar = genmodel_jar()
        classpath = [str(jar), str(helper_classes(jar))]
        try:
            # -Xrs keeps SIGTERM and SIGINT with Python: the JVM's own handlers would exit the
            # process at once instead of letting the server drain in-flight requests.
            jpype.startJVM("-Xrs", *java_options(), classpath=classpath, convertStrings=False)
        except OSError as exc:
            raise ConfigurationError(
                f"Could not start a JVM for h2o3-mojo-scorer ({exc}); install Java 11 or later, "
                "or set JAVA_HOME"
            ) from exc
        if threading.current_thread() is not threading.main_thread():
            # The starting thread stays attached as a non-daemon Java thread, and the JVM's
            # shutdown at interpreter exit would wait for it forever. Threads that call Java
            # later are attached again automatically, as daemons.
            jpype.java.lang.Thread.detach()


def main() -> int:
    """Compile the helper (for images built with a JDK) and print its directory."""
    print(helper_classes(genmodel_jar()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
