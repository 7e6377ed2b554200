from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from scorer_core.config.plugins import ENTRY_POINT_GROUP, load_plugins
from scorer_core.config.settings import load_settings
from scorer_core.errors import AmbiguousRuntime, ConfigurationError, NoRuntimeFound, PluginLoadError
from tests.conftest import INSTALLED_PLUGINS, PLUGINS_DIR


@pytest.fixture(autouse=True)
def plugins_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    for name in ("SCORER_EXTRA_PLUGINS", "SCORER_DISABLE_PLUGINS", "SCORER_LOAD_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


def plugins(**settings):
    return load_plugins(load_settings(**settings))


def test_hook_scorer_register_runtimes():
    loaded = plugins(extra_plugins="echo_plugin,probe_plugin", disable_plugins=INSTALLED_PLUGINS)
    assert sorted(loaded.runtimes) == ["echo-scorer", "probe-scorer"]


def test_hook_scorer_register_demo_models():
    loaded = plugins(extra_plugins="probe_plugin", disable_plugins=INSTALLED_PLUGINS)
    demo = loaded.demo_models()["probe"]
    assert demo.runtime == "probe-scorer"


def test_hook_scorer_configured_models(tmp_path, monkeypatch):
    loaded = plugins(extra_plugins="probe_plugin", disable_plugins=INSTALLED_PLUGINS)
    assert loaded.configured_model() is None
    monkeypatch.setenv("PROBE_MODEL_PATH", str(tmp_path / "m.probe"))
    configured = loaded.configured_model()
    assert configured is not None
    assert (configured.path, configured.runtime, configured.source) == (
        tmp_path / "m.probe",
        "probe-scorer",
        "PROBE_MODEL_PATH",
    )


def test_two_configured_models_stop_start_up_naming_both(tmp_path, monkeypatch):
    import probe_plugin

    module = type(sys)("second_probe_plugin")
    module.scorer_configured_models = probe_plugin.hookimpl(  # type: ignore[attr-defined]
        lambda: [probe_plugin.ConfiguredModel(tmp_path / "b.probe", "probe-scorer", "OTHER_PATH")]
    )
    monkeypatch.setitem(sys.modules, "second_probe_plugin", module)
    monkeypatch.setenv("PROBE_MODEL_PATH", str(tmp_path / "a.probe"))
    loaded = plugins(extra_plugins="probe_plugin,second_probe_plugin", disable_plugins=INSTALLED_PLUGINS)
    with pytest.raises(ConfigurationError) as error:
        loaded.configured_model()
    message = str(error.value)
    assert message.startswith("More than one model is configured: ") and message.endswith("Set only one")
    assert f"PROBE_MODEL_PATH names '{tmp_path / 'a.probe'}'" in message
    assert f"OTHER_PATH names '{tmp_path / 'b.probe'}'" in message


def test_installed_mlflow_plugin_is_found_through_its_entry_point():
    loaded = plugins()
    assert "mlflow-scorer" in loaded.runtimes
    info = {i.name: i for i in loaded.describe()}["mlflow"]
    assert info.distribution == "scorer-mlflow" and info.runtimes == ["mlflow-scorer"]
    assert info.hooks == ["scorer_register_demo_models", "scorer_register_runtimes", "scorer_resolve_model_uri"]


def installed(monkeypatch, *modules: str) -> None:
    """Make the entry-point group list exactly these test plugin modules, as if installed."""
    points = [
        importlib.metadata.EntryPoint(name=module.removesuffix("_plugin"), value=module, group=ENTRY_POINT_GROUP)
        for module in modules
    ]
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: points if group == ENTRY_POINT_GROUP else []
    )


def test_every_installed_plugin_loads_without_lists(monkeypatch):
    installed(monkeypatch, "echo_plugin", "probe_plugin")
    assert sorted(plugins().runtimes) == ["echo-scorer", "probe-scorer"]


def test_disable_plugins_blocks_an_installed_plugin_and_keeps_the_others(monkeypatch):
    installed(monkeypatch, "echo_plugin", "probe_plugin")
    assert sorted(plugins(disable_plugins="echo").runtimes) == ["probe-scorer"]


def test_load_plugins_is_an_allowlist(monkeypatch):
    installed(monkeypatch, "echo_plugin", "probe_plugin")
    assert sorted(plugins(load_plugins="echo").runtimes) == ["echo-scorer"]
    assert plugins(load_plugins="nothing-by-this-name").runtimes == {}


def test_a_plugin_both_installed_and_named_in_extra_plugins_registers_once(monkeypatch, caplog):
    caplog.set_level("INFO")
    installed(monkeypatch, "echo_plugin")
    loaded = plugins(extra_plugins="echo_plugin")
    assert sorted(loaded.runtimes) == ["echo-scorer"]
    assert [info.name for info in loaded.describe()] == ["echo"]
    assert "already registered as plugin \"echo\"; loading it once" in caplog.text


def test_hook_scorer_wrap_runtime(monkeypatch):
    import echo_plugin

    calls = []

    def wrap_with(label):
        def scorer_wrap_runtime(runtime):
            calls.append((label, runtime.__name__))
            return type(f"{label}{runtime.__name__}", (runtime,), {})

        return echo_plugin.hookimpl(scorer_wrap_runtime)

    for label in ("First", "Second"):
        module = type(sys)(f"{label.lower()}_wrapper")
        module.scorer_wrap_runtime = wrap_with(label)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, f"{label.lower()}_wrapper", module)
    loaded = plugins(extra_plugins="echo_plugin,first_wrapper,second_wrapper", disable_plugins=INSTALLED_PLUGINS)
    wrapped = loaded.wrap_runtime(loaded.runtimes["echo-scorer"])
    assert calls == [("First", "EchoRuntime"), ("Second", "FirstEchoRuntime")]
    assert wrapped.__name__ == "SecondFirstEchoRuntime" and issubclass(wrapped, echo_plugin.EchoRuntime)
    assert wrapped.name == "echo-scorer"


def test_a_wrapper_that_is_not_a_subclass_is_refused(monkeypatch):
    import echo_plugin

    module = type(sys)("bad_wrapper")
    module.scorer_wrap_runtime = echo_plugin.hookimpl(lambda runtime: dict)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bad_wrapper", module)
    loaded = plugins(extra_plugins="echo_plugin,bad_wrapper", disable_plugins=INSTALLED_PLUGINS)
    with pytest.raises(PluginLoadError, match="not a subclass of it") as error:
        loaded.wrap_runtime(loaded.runtimes["echo-scorer"])
    assert error.value.plugin == "bad_wrapper"


def test_detection_picks_the_single_runtime_that_claims_the_path(tmp_path):
    loaded = plugins(extra_plugins="echo_plugin,probe_plugin", disable_plugins=INSTALLED_PLUGINS)
    assert loaded.select_runtime(tmp_path / "m.echo", None).name == "echo-scorer"
    assert loaded.select_runtime(tmp_path / "m.echo", "probe-scorer").name == "probe-scorer"


def test_no_runtime_for_a_path_lists_what_is_installed(tmp_path):
    loaded = plugins(extra_plugins="echo_plugin", disable_plugins=INSTALLED_PLUGINS)
    with pytest.raises(
        NoRuntimeFound, match=r"No installed runtime can load .*model\.bin'; installed runtimes: echo-scorer"
    ):
        loaded.select_runtime(tmp_path / "model.bin", None)
    with pytest.raises(
        NoRuntimeFound, match="No installed runtime is named 'nope'; installed runtimes: echo-scorer"
    ):
        loaded.select_runtime(tmp_path / "model.bin", "nope")


def test_two_runtimes_claiming_a_path_is_ambiguous(tmp_path, monkeypatch):
    import echo_plugin

    class OtherEcho(echo_plugin.EchoRuntime):
        name = "other-echo-scorer"

    module = type(sys)("other_echo_plugin")
    module.scorer_register_runtimes = echo_plugin.hookimpl(lambda: [OtherEcho])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "other_echo_plugin", module)
    loaded = plugins(extra_plugins="echo_plugin,other_echo_plugin", disable_plugins=INSTALLED_PLUGINS)
    with pytest.raises(AmbiguousRuntime) as excinfo:
        loaded.select_runtime(tmp_path / "model.echo", None)
    assert (
        str(excinfo.value)
        == "'model.echo' can be loaded by 'echo-scorer' and 'other-echo-scorer'; pass --runtime"
    )
    assert excinfo.value.candidates == ["echo-scorer", "other-echo-scorer"]


def test_the_higher_detection_priority_claims_a_shared_path(tmp_path, monkeypatch):
    import echo_plugin

    class SpecialEcho(echo_plugin.EchoRuntime):
        name = "special-echo-scorer"
        detection_priority = 10

    module = type(sys)("special_echo_plugin")
    module.scorer_register_runtimes = echo_plugin.hookimpl(lambda: [SpecialEcho])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "special_echo_plugin", module)
    loaded = plugins(extra_plugins="echo_plugin,special_echo_plugin", disable_plugins=INSTALLED_PLUGINS)
    assert loaded.select_runtime(tmp_path / "model.echo", None).name == "special-echo-scorer"
    assert loaded.select_runtime(tmp_path / "model.echo", "echo-scorer").name == "echo-scorer"


def test_misspelt_hook_fails_at_start_up_naming_it():
    with pytest.raises(PluginLoadError, match="unknown hook 'scorer_register_runtime'"):
        plugins(extra_plugins="misspelt_plugin", disable_plugins=INSTALLED_PLUGINS)


def test_import_error_names_the_plugin():
    with pytest.raises(PluginLoadError) as excinfo:
        plugins(extra_plugins="broken_plugin", disable_plugins=INSTALLED_PLUGINS)
    assert excinfo.value.plugin == "broken_plugin"
    assert "No module named 'a_dependency_that_is_not_installed'" in str(excinfo.value)


def test_entry_point_import_error_names_plugin_and_distribution(monkeypatch):
    class FakeDist:
        name, version = "scorer-broken", "9.9"

    class FakeEntryPoint:
        name, group, dist = "broken", ENTRY_POINT_GROUP, FakeDist()

        def load(self):
            raise ModuleNotFoundError("No module named 'jpype'")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint()])
    with pytest.raises(PluginLoadError) as excinfo:
        plugins()
    assert (
        str(excinfo.value)
        == "Error loading plugin \"broken\" (scorer-broken 9.9): ModuleNotFoundError: No module named 'jpype'"
    )


def test_duplicate_runtime_names_are_rejected(monkeypatch):
    import echo_plugin

    module = type(sys)("twin_plugin")
    module.scorer_register_runtimes = echo_plugin.hookimpl(lambda: [echo_plugin.EchoRuntime])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "twin_plugin", module)
    with pytest.raises(PluginLoadError, match="Runtime 'echo-scorer' is registered by both"):
        plugins(extra_plugins="echo_plugin,twin_plugin", disable_plugins=INSTALLED_PLUGINS)


def test_can_load_that_raises_counts_as_no(tmp_path, monkeypatch, caplog):
    import echo_plugin

    def explode(cls, path: Path) -> bool:
        raise OSError("permission denied")

    monkeypatch.setattr(echo_plugin.EchoRuntime, "can_load", classmethod(explode))
    loaded = plugins(extra_plugins="echo_plugin,probe_plugin", disable_plugins=INSTALLED_PLUGINS)
    assert loaded.select_runtime(tmp_path / "m.probe", None).name == "probe-scorer"
    assert "raised in can_load" in caplog.text
