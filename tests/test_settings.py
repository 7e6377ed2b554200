from __future__ import annotations

import re
from pathlib import Path

import pytest

from scorer_core.config.settings import REMOVED_ENV_VARS, Settings, load_settings, removed_env_var_warnings
from scorer_core.errors import ConfigurationError

DOCS = Path(__file__).parent.parent / "docs" / "settings.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "MODEL_PATH",
        "MODEL_ID",
        "SCORING_CONCURRENCY",
        "H2O_SCORER_FORWARD_HEADERS",
        "SCORER_PORT",
        "SHAPLEY_ENABLE",
        "SHAPLEY_TYPES_ENABLED",
        "BATCH_WORKERS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_h2o_environment_names_are_read(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "my-model")
    monkeypatch.setenv("H2O_SCORER_FORWARD_HEADERS", "Authorization")
    monkeypatch.setenv("SCORING_CONCURRENCY", "3")
    monkeypatch.setenv("MODEL_PATH", "/models/pipeline.mojo")
    settings = load_settings()
    assert settings.model_id == "my-model"
    assert settings.header_forwarding.names == ("Authorization",)
    assert settings.scoring_concurrency == 3
    assert settings.model_path == "/models/pipeline.mojo"  # as given: a URI must keep its //


def test_flags_override_the_environment(monkeypatch):
    monkeypatch.setenv("SCORER_PORT", "9000")
    assert load_settings(port=9100).port == 9100
    assert load_settings(port=None).port == 9000


def test_generic_host_and_port_variables_are_not_read(monkeypatch):
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("HOST", "example")
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("SCORING_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError, match=r"SCORING_CONCURRENCY='lots'"):
        load_settings()


def test_bad_shapley_type_lists_the_choices(monkeypatch):
    monkeypatch.setenv("SHAPLEY_TYPES_ENABLED", "SOME")
    with pytest.raises(ConfigurationError, match="ALL, ORIGINAL, TRANSFORMED, NONE"):
        load_settings()


def test_zero_concurrency_is_rejected(monkeypatch):
    monkeypatch.setenv("SCORING_CONCURRENCY", "0")
    with pytest.raises(ConfigurationError, match="SCORING_CONCURRENCY='0'"):
        load_settings()


def test_removed_variables_are_named_with_their_replacement():
    warnings = removed_env_var_warnings(
        {"H2O_SCORER_WORKERS": "4", "H2O_SCORER_AUTHORIZATION_HEADER": "Authorization"}
    )
    assert warnings == [
        "H2O_SCORER_WORKERS is set but no longer used (removed in H2O scoring runtimes 2.0); "
        "use SCORING_CONCURRENCY and BATCH_WORKERS instead",
        "H2O_SCORER_AUTHORIZATION_HEADER is set but no longer used (removed in H2O scoring runtimes 2.0); "
        "use H2O_SCORER_FORWARD_HEADERS instead (e.g. H2O_SCORER_FORWARD_HEADERS=Authorization)",
    ]
    assert removed_env_var_warnings({}) == []


def test_every_setting_is_documented():
    documented = set(re.findall(r"^## `([A-Z0-9_]+)`", DOCS.read_text(), re.MULTILINE))
    for name, field in Settings.model_fields.items():
        names = set(field.validation_alias.choices)  # type: ignore[union-attr]
        assert names & documented, f"setting {name} ({names}) is not documented in docs/settings.md"
    for removed in REMOVED_ENV_VARS:
        assert removed in DOCS.read_text(), f"removed variable {removed} is not documented"


def test_an_empty_shapley_types_enabled_is_refused_as_javas_valueof_refuses_it(monkeypatch):
    monkeypatch.setenv("SHAPLEY_TYPES_ENABLED", "")
    with pytest.raises(ConfigurationError, match="SHAPLEY_TYPES_ENABLED=''"):
        load_settings()
