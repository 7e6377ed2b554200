"""dai-mojo-scorer against the daimojo double: every branch, in-process and over HTTP."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scorer_dai_mojo.runtime import DaiMojoRuntime

import conformance
from conformance import start_server
from scorer_core import DataType, ShapleyType
from scorer_core.wire.cells import build_frame

from .conftest import BINOMIAL, LICENCE, MULTICLASS, SERVER_ENV, write_pipeline

BOTH = frozenset({ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED})
HOUSES = {
    "fields": ["age", "rooms", "city", "built", "garden"],
    "rows": [
        ["10.5", "3", "paris", "1990-05-01", "true"],
        ["NA", "", "oslo", "", "false"],
        ["2", "1", "rome", "2020-01-01", ""],
    ],
}


def expected_price(age, rooms, city, year, garden):
    return (
        10.0
        + 0.5 * age
        + 2.0 * rooms
        + {"paris": 3.0, "oslo": -1.0}.get(city, 0.0)
        + 0.01 * year
        + 1.5 * garden
    )


PRICES = [
    expected_price(10.5, 3, "paris", 1990, 1),
    expected_price(0, 0, "oslo", 0, 0),
    expected_price(2, 1, "rome", 2020, 0),
]


def loaded(path):
    runtime = DaiMojoRuntime()
    runtime.load(path)
    return runtime


def frame(runtime, body):
    return build_frame(body["fields"], body["rows"], runtime.schema.inputs, runtime.missing_values)


def test_schema_model_id_and_capabilities_come_from_the_pipeline(pipelines):
    runtime = loaded(pipelines["regression"])
    assert [(f.name, f.data_type) for f in runtime.schema.inputs] == [
        ("age", DataType.FLOAT64),
        ("rooms", DataType.INT32),
        ("city", DataType.STR),
        ("built", DataType.STR),
        ("garden", DataType.BOOL),
    ]
    assert [(f.name, f.data_type) for f in runtime.schema.outputs] == [("price", DataType.FLOAT64)]
    assert [f.name for f in runtime.schema.interval_outputs] == ["price.lower", "price.upper"]
    assert runtime.model_id == "7d3c58a4-regression"
    assert runtime.capabilities.prediction_intervals
    assert runtime.capabilities.contributions == {ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED}
    assert "NA" in runtime.missing_values


def test_pipeline_file_itself_is_accepted_too(pipelines):
    assert DaiMojoRuntime.can_load(pipelines["regression"] / "pipeline.mojo")
    assert loaded(pipelines["regression"] / "pipeline.mojo").model_id == "7d3c58a4-regression"


def test_regression_scores_every_type_and_missing_value(pipelines):
    runtime = loaded(pipelines["regression"])
    prices = runtime.score(frame(runtime, HOUSES))["price"]
    assert list(prices) == pytest.approx(PRICES, rel=1e-12)


def test_intervals_are_the_target_plus_lower_and_upper(pipelines):
    runtime = loaded(pipelines["regression"])
    outputs, bounds = runtime.score_with_intervals(frame(runtime, HOUSES))
    assert list(outputs) == ["price"] and list(bounds) == ["price.lower", "price.upper"]
    np.testing.assert_allclose(bounds["price.lower"], np.asarray(PRICES) - 2.5)
    np.testing.assert_allclose(bounds["price.upper"], np.asarray(PRICES) + 2.5)


@pytest.mark.parametrize("shapley_type", [ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED])
def test_contributions_of_both_types_add_up_to_the_prediction(pipelines, shapley_type):
    runtime = loaded(pipelines["regression"])
    contributions = runtime.contributions(frame(runtime, HOUSES), shapley_type)
    [group] = contributions.groups
    assert group.output_group is None
    assert contributions.features[-1] == "contrib_bias"
    if shapley_type is ShapleyType.ORIGINAL:
        assert list(contributions.features) == [
            "contrib_age",
            "contrib_rooms",
            "contrib_city",
            "contrib_built",
            "contrib_garden",
            "contrib_bias",
        ]
    else:
        assert list(contributions.features) == [
            "contrib_0_age",
            "contrib_1_rooms",
            "contrib_2_OHE:city.paris",
            "contrib_2_OHE:city.oslo",
            "contrib_3_built~year",
            "contrib_4_garden",
            "contrib_bias",
        ]
    assert list(group.values.sum(axis=1)) == pytest.approx(PRICES, rel=1e-12)


def test_binomial_outputs_one_probability_per_class_and_one_contribution_group(pipelines):
    runtime = loaded(pipelines["binomial"])
    body = {"fields": ["tenure", "plan", "spend"], "rows": [["12", "pro", "55.5"], ["", "basic", "NA"]]}
    outputs = runtime.score(frame(runtime, body))
    assert list(outputs) == ["churn.0", "churn.1"]
    margin = -0.5 - 0.1 * 12 - 0.8 + 0.02 * np.float32(55.5)
    assert outputs["churn.1"][0] == pytest.approx(1 / (1 + math.exp(-margin)), rel=1e-7)
    assert not runtime.capabilities.prediction_intervals
    contributions = runtime.contributions(frame(runtime, body), ShapleyType.ORIGINAL)
    assert [g.output_group for g in contributions.groups] == [None]
    assert contributions.groups[0].values.sum(axis=1)[0] == pytest.approx(margin, rel=1e-7)


@pytest.mark.parametrize(
    ("shapley_type", "features"),
    [
        (ShapleyType.ORIGINAL, ["contrib_petal_length", "contrib_colour", "contrib_bias"]),
        # Real transformed names hold '.' and ':' themselves: the class is only the last suffix.
        (
            ShapleyType.TRANSFORMED,
            [
                "contrib_0_ClusterDist10:petal_length.0",
                "contrib_1_OHE:colour.blue",
                "contrib_1_OHE:colour.white",
                "contrib_bias",
            ],
        ),
    ],
)
def test_multiclass_contributions_form_one_group_per_class(pipelines, shapley_type, features):
    runtime = loaded(pipelines["multiclass"])
    assert runtime.capabilities.contributions == {ShapleyType.ORIGINAL, ShapleyType.TRANSFORMED}
    body = {"fields": ["petal_length", "colour"], "rows": [["1.5", "blue"], ["4.0", "white"]]}
    contributions = runtime.contributions(frame(runtime, body), shapley_type)
    assert list(contributions.features) == features
    assert [g.output_group for g in contributions.groups] == ["setosa", "versicolor", "virginica"]
    margin = 0.25 + 0.7 * 1.5 + 1.0
    for group, scale, shift in zip(contributions.groups, [1.0, -0.5, 0.3], [0.0, 0.2, -0.1], strict=True):
        assert group.values[0].sum() == pytest.approx(scale * margin + shift, rel=1e-12)
    probabilities = runtime.score(frame(runtime, body))
    assert list(probabilities) == ["species.setosa", "species.versicolor", "species.virginica"]
    assert sum(probabilities[c][0] for c in probabilities) == pytest.approx(1.0)


def test_java_would_cut_these_names_at_the_first_match_where_the_suffix_rule_does_not(pipelines):
    # H2O's Java scorer finds "\\.<class>" anywhere in a name; a class named like a one-hot level
    # ("blue") would cut "contrib_1_OHE:colour.blue.blue" at the first ".blue". The suffix rule
    # that group_by_class follows keeps the whole feature name.
    from scorer_core.contributions import group_by_class

    names = ["contrib_1_OHE:colour.blue.blue", "contrib_bias.blue", "contrib_1_OHE:colour.blue.red", "contrib_bias.red"]
    grouped = group_by_class(names, np.zeros((0, 4)), ["colour.blue", "colour.red"])
    assert list(grouped.features) == ["contrib_1_OHE:colour.blue", "contrib_bias"]


@pytest.mark.parametrize("schema", [None, "names_and_types"])
def test_a_pipeline_from_before_dai_1_9_is_served_without_contributions(tmp_path, caplog, schema):
    # With schema() naming the columns too: only predict() refuses old pipelines.
    spec = {**BINOMIAL, "uuid": "old-1", "dai_version": "1.8.7", **({"schema": schema} if schema else {})}
    runtime = loaded(write_pipeline(tmp_path / "old", spec))
    assert runtime.verify_contributions(BOTH) == frozenset()
    assert "Shapley contributions of type ORIGINAL are disabled for this pipeline" in caplog.text
    assert "from DAI 1.8.7" in caplog.text
    assert list(runtime.score(frame(runtime, {"fields": ["tenure", "plan", "spend"], "rows": [["1", "pro", "2"]]})))


def test_contribution_names_come_from_daimojos_schema_when_it_names_them(tmp_path, monkeypatch):
    import daimojo

    pipeline = write_pipeline(tmp_path / "s", {**MULTICLASS, "uuid": "schema-1", "schema": "names_and_types"})
    calls = []
    predict = daimojo.model.predict
    monkeypatch.setattr(daimojo.model, "predict", lambda self, *a, **k: calls.append(k) or predict(self, *a, **k))
    runtime = loaded(pipeline)
    assert runtime.verify_contributions(BOTH) == BOTH
    assert calls == [], "with schema() naming the columns, checking scores nothing"
    without = loaded(write_pipeline(tmp_path / "p", {**MULTICLASS, "uuid": "probe-1"}))
    assert calls == [], "loading alone checks no Shapley type: none is enabled by default"
    assert without.verify_contributions(BOTH) == BOTH
    assert len(calls) == 2, "without schema(), one row of missing values is scored per type checked"
    assert without.verify_contributions(frozenset({ShapleyType.ORIGINAL})) == {ShapleyType.ORIGINAL}
    assert len(calls) == 3, "only the types asked for are checked"


def test_columns_that_do_not_split_by_class_disable_that_type_with_a_warning(pipelines, monkeypatch, caplog):
    import daimojo

    original = daimojo.model._names

    def unsplittable(self, pred_contribs, pred_contribs_original, interval):
        names = original(self, pred_contribs, pred_contribs_original, interval)
        return [n.rsplit(".", 1)[0] + ".other" for n in names] if pred_contribs and not pred_contribs_original else names

    monkeypatch.setattr(daimojo.model, "_names", unsplittable)
    runtime = loaded(pipelines["multiclass"])
    assert runtime.verify_contributions(BOTH) == {ShapleyType.ORIGINAL}
    assert "Shapley contributions of type TRANSFORMED are disabled for this pipeline" in caplog.text


def test_the_server_drops_an_enabled_type_that_fails_its_check(pipelines, monkeypatch, tmp_path):
    from scorer_core.config.settings import load_settings
    from scorer_core.execution.executors import load_runtime

    old = write_pipeline(tmp_path / "old", {**BINOMIAL, "uuid": "old-2", "dai_version": "1.8.7"})
    _, facts = load_runtime(DaiMojoRuntime, old, load_settings(shapley_enable="true"))
    assert facts.capabilities.contributions == frozenset()
    assert facts.wire_capabilities == ["SCORE"]


# --- over HTTP -------------------------------------------------------------------------------


#: Shapley is off until the operator enables it, as in H2O's Java DAI scorer.
SHAPLEY_ON = {**SERVER_ENV, "SHAPLEY_ENABLE": "true"}


@pytest.fixture(scope="module")
def regression_server(pipelines):
    with start_server(pipelines["regression"], env=SHAPLEY_ON, record_headers=False) as target:
        yield target


def test_capabilities_are_auto_detected_in_h2os_order(regression_server):
    assert regression_server.get("/model/capabilities").json() == [
        "SCORE_PREDICTION_INTERVAL",
        "SCORE",
        "CONTRIBUTION_ORIGINAL",
        "CONTRIBUTION_TRANSFORMED",
    ]


def test_no_shapley_type_is_enabled_by_default_as_in_h2os_dai_scorer(pipelines):
    with start_server(pipelines["regression"], env=SERVER_ENV, record_headers=False) as target:
        assert target.get("/model/capabilities").json() == ["SCORE_PREDICTION_INTERVAL", "SCORE"]
        reply = target.post("/model/contribution", {**HOUSES, "requestShapleyValueType": "ORIGINAL"})
        assert reply.status == 400 and "SHAPLEY_ENABLE=true" in reply.json()["detail"]


def test_the_schema_lists_the_interval_bounds_after_the_target(regression_server):
    fields = regression_server.get("/model/schema").json()["schema"]["outputFields"]
    assert fields == [
        {"name": "price", "dataType": "Float64"},
        {"name": "price.lower", "dataType": "Float64"},
        {"name": "price.upper", "dataType": "Float64"},
    ]


def test_score_with_intervals_over_http(regression_server):
    reply = regression_server.post("/model/score", {**HOUSES, "requestPredictionIntervals": True})
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body["fields"] == ["price"]
    assert [float(r[0]) for r in body["score"]] == pytest.approx(PRICES, rel=1e-12)
    assert body["predictionIntervals"]["fields"] == ["price.lower", "price.upper"]
    assert [float(r[1]) for r in body["predictionIntervals"]["rows"]] == pytest.approx(
        [p + 2.5 for p in PRICES]
    )


def test_without_asking_score_has_no_intervals(regression_server):
    body = regression_server.post("/model/score", HOUSES).json()
    assert body["fields"] == ["price"] and "predictionIntervals" not in body


def test_multiclass_contribution_groups_over_http(pipelines):
    with start_server(pipelines["multiclass"], env=SHAPLEY_ON, record_headers=False) as target:
        reply = target.post(
            "/model/contribution",
            {
                "requestShapleyValueType": "ORIGINAL",
                "fields": ["petal_length", "colour"],
                "rows": [["1.5", "blue"]],
            },
        )
        assert reply.status == 200, reply.text
        body = reply.json()
        assert body["features"] == ["contrib_petal_length", "contrib_colour", "contrib_bias"]
        assert [g["outputGroup"] for g in body["contributionGroups"]] == ["setosa", "versicolor", "virginica"]
        transformed = target.post(
            "/model/contribution",
            {
                "requestShapleyValueType": "TRANSFORMED",
                "fields": ["petal_length", "colour"],
                "rows": [["1.5", "blue"]],
            },
        )
        assert transformed.status == 200
        assert transformed.json()["features"][0] == "contrib_0_ClusterDist10:petal_length.0"
        assert (
            target.post(
                "/model/score",
                {
                    "fields": ["petal_length", "colour"],
                    "rows": [["1", "blue"]],
                    "requestPredictionIntervals": True,
                },
            ).status
            == 400
        )


def test_shapley_settings_narrow_what_is_auto_detected(pipelines):
    env = {**SERVER_ENV, "SHAPLEY_TYPES_ENABLED": "ORIGINAL"}
    with start_server(pipelines["regression"], env=env, record_headers=False) as target:
        assert target.get("/model/capabilities").json() == [
            "SCORE_PREDICTION_INTERVAL",
            "SCORE",
            "CONTRIBUTION_ORIGINAL",
        ]
        reply = target.post("/model/contribution", {**HOUSES, "requestShapleyValueType": "TRANSFORMED"})
        assert reply.status == 400 and "SHAPLEY_TYPES_ENABLED" in reply.json()["detail"]


# --- start-up errors ---------------------------------------------------------------------------


def serve(path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERLESS_AI_LICENSE")}
    return subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", "--port", "0", str(path)],
        env={**base, **{k: v for k, v in SERVER_ENV.items() if k != "DRIVERLESS_AI_LICENSE_KEY"}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_no_licence_is_a_start_up_error_naming_the_variables(pipelines, tmp_path):
    result = serve(pipelines["regression"], HOME=str(tmp_path))
    # Found before the server listens (check_model): a configuration error, status 2, one line.
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "scorer: error: dai-mojo-scorer needs a Driverless AI licence: set DRIVERLESS_AI_LICENSE_KEY to the licence key, or DRIVERLESS_AI_LICENSE_FILE"
    )
    assert "Traceback" not in result.stderr and "Listening on http" not in result.stderr


@pytest.mark.slow
def test_a_rejected_licence_is_a_start_up_error(pipelines):
    result = serve(pipelines["regression"], DRIVERLESS_AI_LICENSE_KEY="expired")
    assert result.returncode == 1
    assert "daimojo rejected the Driverless AI licence from DRIVERLESS_AI_LICENSE_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_licence_file_is_read_and_a_missing_one_named(pipelines, tmp_path):
    missing = serve(pipelines["regression"], DRIVERLESS_AI_LICENSE_FILE=str(tmp_path / "nope.sig"))
    assert missing.returncode == 2 and "Listening on http" not in missing.stderr
    assert f"DRIVERLESS_AI_LICENSE_FILE '{tmp_path / 'nope.sig'}' is not a readable file" in missing.stderr
    licence_file = tmp_path / "license.sig"
    licence_file.write_text(LICENCE + "\n")
    env = {**SERVER_ENV, "DRIVERLESS_AI_LICENSE_FILE": str(licence_file)}
    del env["DRIVERLESS_AI_LICENSE_KEY"]
    with start_server(pipelines["regression"], env=env, record_headers=False) as target:
        assert target.get("/model/id").text == "7d3c58a4-regression"


@pytest.mark.slow
def test_an_unreadable_pipeline_is_a_clear_start_up_error(tmp_path):
    pipeline = tmp_path / "mojo-pipeline"
    pipeline.mkdir()
    (pipeline / "pipeline.mojo").write_bytes(b"\x00\x01 not a pipeline")
    result = serve(pipeline, DRIVERLESS_AI_LICENSE_KEY=LICENCE)
    assert result.returncode == 1
    assert (
        f"daimojo cannot load '{pipeline / 'pipeline.mojo'}': Unable to create a mojo model" in result.stderr
    )


def test_a_directory_without_pipeline_mojo_is_not_detected(tmp_path):
    assert not DaiMojoRuntime.can_load(tmp_path)
    write_pipeline(tmp_path / "x", {"uuid": "u", "target": "t", "bias": 0, "features": []})
    assert DaiMojoRuntime.can_load(tmp_path / "x" / "mojo-pipeline")


# --- the contract ------------------------------------------------------------------------------


@pytest.mark.slow
class TestRegressionConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(lambda fixture: fixture("pipelines")["regression"], env=SHAPLEY_ON)


@pytest.mark.slow
class TestMulticlassConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(lambda fixture: fixture("pipelines")["multiclass"], env=SHAPLEY_ON)


@pytest.mark.slow
class TestBinomialInAWorkerProcess(conformance.RuntimeSuite):
    scorer_target = conformance.served(
        lambda fixture: fixture("pipelines")["binomial"], env={**SHAPLEY_ON, "BATCH_WORKERS": "1"}
    )


@pytest.mark.parametrize(
    ("described", "names"),
    [
        ((["contrib_x", "contrib_bias"], ["float64", "float64"]), ["contrib_x", "contrib_bias"]),
        ([("contrib_x", "float64"), ("contrib_bias", "float64")], ["contrib_x", "contrib_bias"]),
        ([("price", "float64")], ["price"]),
        (["price", "price.lower", "price.upper"], ["price", "price.lower", "price.upper"]),
        (("price", "float64"), None),  # a flat (name, type): not a list of names
        ((), None),
        (42, None),
        ({"names": ["a"]}, None),
    ],
)
def test_names_are_read_from_the_layouts_schema_may_return(described, names):
    from scorer_dai_mojo.runtime import _names_in

    assert _names_in(described) == names
