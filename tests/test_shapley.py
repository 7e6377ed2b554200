from __future__ import annotations

import pytest

from scorer_core.config.shapley import ShapleyPolicy
from scorer_core.errors import ConfigurationError, InvalidRequest, UnsupportedOperation
from scorer_core.schema import Capabilities, ShapleyType

ORIG, TRANS = ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED


@pytest.mark.parametrize(
    ("enable", "types", "expected"),
    [
        (None, None, set()),
        ("true", None, {ORIG, TRANS}),
        ("TRUE", "ORIGINAL", {ORIG, TRANS}),  # SHAPLEY_ENABLE wins, as in H2O's scorer
        ("false", "TRANSFORMED", {TRANS}),
        (None, "ALL", {ORIG, TRANS}),
        (None, "ORIGINAL", {ORIG}),
        (None, "NONE", set()),
    ],
)
def test_settings_resolve_like_h2os_scorer(enable, types, expected):
    assert ShapleyPolicy.from_settings(enable, types).enabled == expected


def test_nothing_is_enabled_by_default_and_the_error_says_how_to_enable_it():
    policy = ShapleyPolicy.from_settings(None, None)
    assert policy.enabled == set()
    with pytest.raises(InvalidRequest, match="set SHAPLEY_TYPES_ENABLED=ORIGINAL or ALL, or SHAPLEY_ENABLE=true"):
        policy.check(ORIG, frozenset({ORIG}))


@pytest.mark.parametrize("value", ["original", " ALL", "ALL ", "", "all"])
def test_a_type_not_spelt_exactly_is_a_configuration_error_as_in_javas_valueof(value):
    with pytest.raises(ConfigurationError, match="expected one of ALL, ORIGINAL, TRANSFORMED, NONE"):
        ShapleyPolicy.from_settings(None, value)


@pytest.mark.parametrize(
    ("enable", "enabled"),
    [("true", True), ("True", True), ("tRuE", True), (" true", False), ("1", False), ("yes", False), ("", False)],
)
def test_shapley_enable_is_javas_parse_boolean(enable, enabled):
    assert bool(ShapleyPolicy.from_settings(enable, None).enabled) is enabled


def test_disabled_type_is_a_400_naming_the_setting():
    policy = ShapleyPolicy.from_settings(None, "ORIGINAL")
    with pytest.raises(InvalidRequest) as excinfo:
        policy.check(TRANS, frozenset({ORIG, TRANS}))
    assert "SHAPLEY_TYPES_ENABLED=TRANSFORMED" in str(excinfo.value)
    assert excinfo.value.status_code == 400


def test_unsupported_type_is_a_501():
    with pytest.raises(UnsupportedOperation):
        ShapleyPolicy.from_settings("true", None).check(ORIG, frozenset())


def test_capabilities_list_only_enabled_types_in_h2o_order():
    caps = Capabilities(prediction_intervals=True, contributions=frozenset({ORIG, TRANS}))
    assert caps.to_wire([TRANS, ORIG]) == [
        "SCORE_PREDICTION_INTERVAL",
        "SCORE",
        "CONTRIBUTION_ORIGINAL",
        "CONTRIBUTION_TRANSFORMED",
    ]
    assert caps.to_wire([TRANS]) == ["SCORE_PREDICTION_INTERVAL", "SCORE", "CONTRIBUTION_TRANSFORMED"]
    assert Capabilities().to_wire([ORIG, TRANS]) == ["SCORE"]
