"""A model path that is a URI (``models:/iris@champion``) is fetched by the plugin that knows its
scheme, before the runtime is chosen; the core itself knows no scheme."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conformance import start_server
from scorer_core import ConfigurationError, PluginLoadError, hookimpl
from scorer_core.config.plugins import load_plugins
from scorer_core.config.selection import resolve_model
from scorer_core.config.settings import load_settings
from tests.conftest import INSTALLED_PLUGINS, PLUGINS_DIR, plugin_env
from tests.test_cli import scorer


def uri_plugin(name: str, scheme: str, models: dict[str, Path], calls: list[str]) -> ModuleType:
    """A plugin fetching ``<scheme>:NAME`` from ``models``, recording every URI it is asked about."""
    module = ModuleType(name)

    def scorer_resolve_model_uri(uri: str) -> Path | None:
        calls.append(uri)
        if not uri.startswith(f"{scheme}:"):
            return None
        model = models.get(uri.removeprefix(f"{scheme}:"))
        if model is None:
            raise ConfigurationError(f"Cannot fetch '{uri}': no such model")
        return model

    module.scorer_resolve_model_uri = hookimpl(scorer_resolve_model_uri)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def probe_model(tmp_path, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    for name in ("SCORER_EXTRA_PLUGINS", "SCORER_DISABLE_PLUGINS", "SCORER_LOAD_PLUGINS", "MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "fetched" / "m.probe"
    path.parent.mkdir()
    path.write_text("{}")
    return path


def resolve(
    model_path: str | None, *plugins: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    for plugin in plugins:
        monkeypatch.setitem(sys.modules, plugin.__name__, plugin)
    extra = ",".join(["probe_plugin", *(p.__name__ for p in plugins)])
    settings = load_settings(model_path=model_path, extra_plugins=extra, disable_plugins=INSTALLED_PLUGINS)
    return resolve_model(settings, load_plugins(settings))


def test_hook_scorer_resolve_model_uri(probe_model, monkeypatch):
    calls: list[str] = []
    plugin = uri_plugin("store_plugin", "store", {"iris@champion": probe_model}, calls)
    assert resolve("store:iris@champion", plugin, monkeypatch=monkeypatch) == (probe_model, "probe-scorer")
    assert calls == ["store:iris@champion"]


def test_a_plugins_error_about_its_own_uri_stops_start_up_as_it_words_it(probe_model, monkeypatch):
    plugin = uri_plugin("store_plugin", "store", {}, [])
    with pytest.raises(ConfigurationError, match=r"^Cannot fetch 'store:nope/1': no such model$"):
        resolve("store:nope/1", plugin, monkeypatch=monkeypatch)


def test_a_uri_no_plugin_fetches_says_so(probe_model, monkeypatch):
    calls: list[str] = []
    plugin = uri_plugin("store_plugin", "store", {}, calls)
    with pytest.raises(ConfigurationError) as error:
        resolve("models:/iris/1", plugin, monkeypatch=monkeypatch)
    assert str(error.value) == (
        "Model path 'models:/iris/1' does not exist, and no installed plugin fetches 'models:' URIs "
        "(scorer-mlflow fetches models:/ and runs:/ from MLflow)"
    )
    assert calls == ["models:/iris/1"]


def test_local_paths_are_never_offered_to_plugins(probe_model, tmp_path, monkeypatch):
    calls: list[str] = []
    plugin = uri_plugin("store_plugin", "store", {}, calls)
    missing = tmp_path / "store:missing.probe"  # a colon inside a path is no scheme
    with pytest.raises(ConfigurationError, match=r"^Model path '.*store:missing.probe' does not exist$"):
        resolve(str(missing), plugin, monkeypatch=monkeypatch)
    with pytest.raises(ConfigurationError, match=r"^Model path 'C:model.probe' does not exist$"):
        resolve("C:model.probe", plugin, monkeypatch=monkeypatch)  # a drive letter, not a scheme
    assert resolve(str(probe_model), plugin, monkeypatch=monkeypatch) == (probe_model, "probe-scorer")
    assert calls == []


def test_two_plugins_fetching_one_uri_stop_start_up_naming_both(probe_model, monkeypatch):
    first = uri_plugin("store_plugin", "store", {"m": probe_model}, [])
    second = uri_plugin("other_store_plugin", "store", {"m": probe_model}, [])
    with pytest.raises(ConfigurationError) as error:
        resolve("store:m", first, second, monkeypatch=monkeypatch)
    message = str(error.value)
    assert message.startswith("Model path 'store:m' is resolved by plugins ")
    assert '"store_plugin"' in message and '"other_store_plugin"' in message
    assert message.endswith("disable one with SCORER_DISABLE_PLUGINS")


def test_an_answer_that_is_not_a_path_names_the_plugin(probe_model, monkeypatch):
    plugin = ModuleType("numbers_plugin")
    plugin.scorer_resolve_model_uri = hookimpl(lambda uri: 42)  # type: ignore[attr-defined]
    with pytest.raises(
        PluginLoadError, match=r"^Plugin \"numbers_plugin\" resolved 'store:m' to 42, which is not a path$"
    ):
        resolve("store:m", plugin, monkeypatch=monkeypatch)


@pytest.mark.parametrize("given", ["setting", "MODEL_PATH"])
def test_a_uri_reaches_the_hook_exactly_as_given(probe_model, monkeypatch, given):
    """The model path was a Path before the hook saw it, so ``s3://bucket/key`` arrived as
    ``s3:/bucket/key``, against the hook's promise of the path as given."""
    calls: list[str] = []
    plugin = uri_plugin("s3_plugin", "s3", {"//bucket/key": probe_model}, calls)
    if given == "MODEL_PATH":
        monkeypatch.setenv("MODEL_PATH", "s3://bucket/key")
        assert resolve(None, plugin, monkeypatch=monkeypatch) == (probe_model, "probe-scorer")
    else:
        assert resolve("s3://bucket/key", plugin, monkeypatch=monkeypatch) == (probe_model, "probe-scorer")
    assert calls == ["s3://bucket/key"]


@pytest.mark.slow
def test_scorer_serve_passes_a_uri_to_the_hook_exactly_as_typed(tmp_path):
    result = scorer(
        "serve", "s3://bucket/models/missing", "--port", "0",
        env=plugin_env("probe_plugin,store_plugin", STORE_PLUGIN_SOURCE=str(tmp_path)),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "scorer: error: Cannot fetch 's3://bucket/models/missing': no such model in the store"
    )


@pytest.mark.slow
def test_a_fetched_copy_is_removed_when_a_thread_the_model_left_makes_the_stop_skip_atexit(tmp_path):
    """A model that leaves a non-daemon thread ends the server through os._exit, which skips
    atexit, where the fetched copy was removed: every such stop left a full copy behind."""
    (tmp_path / "model.rogue").write_text(json.dumps({"rogue": "leave_thread"}))
    env = plugin_env("rogue_plugin,store_plugin", STORE_PLUGIN_SOURCE=str(tmp_path))
    with start_server("store:model.rogue", env=env, record_headers=False) as target:
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).status == 200  # the thread
        fetched = re.search(r"Model path 'store:model.rogue' fetched to '([^']+)'", target.server_log())
        assert fetched, target.server_log()[-3000:]
        local = Path(fetched.group(1))
        assert local.is_file()
        target.process.send_signal(signal.SIGTERM)
        code = target.process.wait(timeout=60)
        log = target.server_log()
    assert code == 0, log
    assert "'rogue-flusher'" in log, "the stop went past the thread the model left, through os._exit"
    assert not local.exists() and not local.parent.parent.exists(), f"{local} outlived the server"
