"""Where genmodel comes from and how the batch helper is built and cached."""

from __future__ import annotations

import pytest
from scorer_h2o3_mojo import jvm

from scorer_core import ConfigurationError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("H2O_GENMODEL_JAR", "SCORER_H2O3_HELPER_DIR", "JAVA_OPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCORER_H2O3_CACHE", str(tmp_path / "cache"))
    return monkeypatch


def test_genmodel_comes_from_the_h2o_packages_jar(clean_env):
    jar = jvm.genmodel_jar()
    assert jar.name == "h2o.jar" and jar.parent.parts[-3:] == ("h2o", "backend", "bin")


def test_a_missing_genmodel_jar_setting_is_a_clear_error(clean_env, tmp_path):
    clean_env.setenv("H2O_GENMODEL_JAR", str(tmp_path / "nope.jar"))
    with pytest.raises(ConfigurationError, match=r"H2O_GENMODEL_JAR '.*nope\.jar' is not a file"):
        jvm.genmodel_jar()


@pytest.mark.slow
def test_the_helper_is_compiled_once_then_reused(clean_env, tmp_path):
    jar = jvm.genmodel_jar()
    first = jvm.helper_classes(jar)
    compiled = first / "scorer_h2o3_mojo" / "ColumnBatchScorer.class"
    assert first.parent == tmp_path / "cache" and compiled.is_file()
    stamp = compiled.stat().st_mtime_ns
    clean_env.setenv("PATH", "")  # no javac now: the cached classes must be enough
    clean_env.delenv("JAVA_HOME", raising=False)
    assert jvm.helper_classes(jar) == first and compiled.stat().st_mtime_ns == stamp


def test_without_javac_or_cache_the_error_says_how_to_build_it(clean_env):
    clean_env.setenv("PATH", "")
    clean_env.delenv("JAVA_HOME", raising=False)
    with pytest.raises(
        ConfigurationError,
        match=r"needs javac for it: install a JDK .* run 'python -m scorer_h2o3_mojo\.jvm'",
    ):
        jvm.helper_classes(jvm.genmodel_jar())


def test_a_helper_dir_without_the_classes_is_refused(clean_env, tmp_path):
    clean_env.setenv("SCORER_H2O3_HELPER_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"holds no scorer_h2o3_mojo/ColumnBatchScorer\.class"):
        jvm.helper_classes(jvm.genmodel_jar())


def test_java_opts_are_split_like_a_shell(clean_env):
    clean_env.setenv("JAVA_OPTS", "-Xmx2g '-Dname=a b'")
    assert jvm.java_options() == ["-Xmx2g", "-Dname=a b"]


def test_empty_variables_count_as_unset_as_templates_leave_them(monkeypatch):
    from scorer_h2o3_mojo.settings import H2O3Settings

    for variable in ("H2O_GENMODEL_JAR", "SCORER_H2O3_CACHE", "XDG_CACHE_HOME", "SCORER_H2O3_HELPER_DIR", "JAVA_HOME"):
        monkeypatch.setenv(variable, "")
    settings = H2O3Settings.load()
    assert settings.genmodel_jar is None and settings.helper_dir is None and settings.java_home is None
    assert settings.cache_root().is_absolute(), "never a cache in the working directory"
    assert jvm.genmodel_jar().name == "h2o.jar"
