"""The HTTP contract over a real socket, against real server processes serving the probe runtime."""

from __future__ import annotations

import time

import pytest

from conformance import start_server, wait_ready
from tests.conftest import plugin_env

pytestmark = pytest.mark.slow

TWO_INPUTS = {"inputs": [["x", "Float64"], ["n", "Int64"]]}


def score(target, body, **kwargs):
    reply = target.post("/model/score", body, **kwargs)
    assert reply.status == 200, reply
    return reply.json()


def test_score_response_layout(probe_server):
    with probe_server(**TWO_INPUTS) as target:
        body = score(
            target,
            {
                "fields": ["id", "x", "n", "other"],
                "rows": [["a", "1.5", "2", "q"], ["b", "-1", "3", "r"]],
                "includeFieldsInOutput": ["other", "id"],
            },
        )
    assert body["fields"] == ["id", "other", "y"]
    assert body["score"] == [["a", "q", "3.0"], ["b", "r", "-2.0"]]
    assert set(body) == {"id", "fields", "score"}


def test_model_id_env_overrides_the_runtime_id(probe_server):
    with probe_server(env={"MODEL_ID": "deployment-7"}, model_id="own-id") as target:
        assert target.get("/model/id").text == "deployment-7"
        assert score(target, {"fields": ["x"], "rows": [["1"]]})["id"] == "deployment-7"


def test_runtime_id_is_used_without_model_id(probe_server):
    with probe_server(model_id="own-id") as target:
        assert target.get("/model/id").text == "own-id"


def test_wrong_row_count_is_a_500_naming_runtime_and_counts(probe_server):
    with probe_server(behaviour="drop_row") as target:
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["1"], ["2"], ["3"], ["4"]]})
        assert reply.status == 500
        assert reply.json() == {
            "detail": "Failed scoring request due to: Runtime 'probe-scorer' returned 3 rows for a request of 4 rows"
        }


def test_model_exception_is_a_500_and_the_server_keeps_serving(probe_server):
    with probe_server() as target:
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["13"]]})
        assert reply.status == 500
        assert reply.json()["detail"] == (
            "Failed scoring request due to: Runtime 'probe-scorer' raised ValueError: the probe model exploded"
        )
        assert score(target, {"fields": ["x"], "rows": [["2"]]})["score"] == [["4.0"]]


def test_runtime_returning_a_non_mapping_is_a_model_error(probe_server):
    with probe_server(behaviour="not_a_mapping") as target:
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["1"]]})
        assert reply.status == 500 and "expected a mapping" in reply.json()["detail"]


def test_empty_rows_skip_the_model_and_return_output_fields(probe_server):
    with probe_server(behaviour="raise") as target:
        body = score(target, {"fields": ["x"], "rows": []})
        model_id = target.get("/model/id").text
    assert model_id.startswith("model-")  # the probe file's name: the runtime sets no id
    assert body == {"id": model_id, "fields": ["y"], "score": []}


def test_contributions_single_group(probe_server):
    with probe_server(
        env={"SHAPLEY_ENABLE": "true"}, contributions=["ORIGINAL", "TRANSFORMED"], **TWO_INPUTS
    ) as target:
        assert target.get("/model/capabilities").json() == [
            "SCORE",
            "CONTRIBUTION_ORIGINAL",
            "CONTRIBUTION_TRANSFORMED",
        ]
        reply = target.post(
            "/model/contribution",
            {
                "requestShapleyValueType": "TRANSFORMED",
                "fields": ["x", "n"],
                "rows": [["1.5", "2"], ["3", "4"]],
            },
        )
        assert reply.status == 200, reply
        assert reply.json() == {
            "features": ["x_t", "n_t"],
            "contributionGroups": [{"contributions": [["1.5", "2.0"], ["3.0", "4.0"]]}],
        }


def test_contributions_one_group_per_class(probe_server):
    with probe_server(
        env={"SHAPLEY_TYPES_ENABLED": "ORIGINAL"}, contributions=["ORIGINAL"], classes=["a", "b"]
    ) as target:
        body = score(target, {"fields": ["x"], "rows": [["1"]], "requestShapleyValueType": "ORIGINAL"})
        assert body["featureShapleyContributions"] == {
            "features": ["x"],
            "contributionGroups": [
                {"outputGroup": "a", "contributions": [["1.0"]]},
                {"outputGroup": "b", "contributions": [["2.0"]]},
            ],
        }


def test_empty_rows_with_shapley_return_feature_names(probe_server):
    with probe_server(env={"SHAPLEY_ENABLE": "true"}, contributions=["ORIGINAL"]) as target:
        body = score(target, {"fields": ["x"], "rows": [], "requestShapleyValueType": "ORIGINAL"})
    assert body["featureShapleyContributions"] == {
        "features": ["x"],
        "contributionGroups": [{"contributions": []}],
    }


def test_disabled_shapley_type_is_a_400_naming_the_setting(probe_server):
    with probe_server(
        env={"SHAPLEY_TYPES_ENABLED": "ORIGINAL"}, contributions=["ORIGINAL", "TRANSFORMED"]
    ) as target:
        assert target.get("/model/capabilities").json() == ["SCORE", "CONTRIBUTION_ORIGINAL"]
        reply = target.post(
            "/model/contribution",
            {"requestShapleyValueType": "TRANSFORMED", "fields": ["x"], "rows": [["1"]]},
        )
        assert reply.status == 400 and "SHAPLEY_TYPES_ENABLED" in reply.json()["detail"]


def test_shapley_is_off_unless_enabled(probe_server):
    with probe_server(contributions=["ORIGINAL"]) as target:
        assert target.get("/model/capabilities").json() == ["SCORE"]
        reply = target.post(
            "/model/contribution", {"requestShapleyValueType": "ORIGINAL", "fields": ["x"], "rows": [["1"]]}
        )
        assert reply.status == 400 and "SHAPLEY_ENABLE=true" in reply.json()["detail"]


def test_no_contributions_is_a_501(probe_server):
    with probe_server(env={"SHAPLEY_ENABLE": "true"}) as target:
        reply = target.post(
            "/model/contribution", {"requestShapleyValueType": "ORIGINAL", "fields": ["x"], "rows": [["1"]]}
        )
        assert reply.status == 501


def test_prediction_intervals(probe_server):
    with probe_server(intervals=True) as target:
        assert target.get("/model/capabilities").json() == ["SCORE_PREDICTION_INTERVAL", "SCORE"]
        body = score(target, {"fields": ["x"], "rows": [["1"], ["2"]], "requestPredictionIntervals": True})
        assert body["score"] == [["2.0"], ["4.0"]]
        assert body["predictionIntervals"] == {
            "fields": ["y.lower", "y.upper"],
            "rows": [["1.0", "3.0"], ["3.0", "5.0"]],
        }


def test_prediction_intervals_on_a_model_without_them_is_a_400(probe_server):
    with probe_server() as target:
        reply = target.post(
            "/model/score", {"fields": ["x"], "rows": [["1"]], "requestPredictionIntervals": True}
        )
        assert reply.status == 400 and "does not support prediction intervals" in reply.json()["detail"]


def test_forwarded_headers_reach_model_code_in_the_operators_spelling(probe_server):
    spec = {"outputs": [["y", "Float64"], ["auth", "Str"]]}
    with probe_server(
        env={"H2O_SCORER_FORWARD_HEADERS": "authorization"}, record_headers=False, **spec
    ) as target:
        body = score(target, {"fields": ["x"], "rows": [["1"]]}, headers={"AUTHORIZATION": "Bearer xyz"})
        assert body["score"] == [["2.0", "Bearer xyz"]]
        assert score(target, {"fields": ["x"], "rows": [["1"]]})["score"] == [["2.0", ""]]


def test_headers_are_not_forwarded_unless_configured(probe_server):
    spec = {"outputs": [["y", "Float64"], ["auth", "Str"]]}
    with probe_server(env={"H2O_SCORER_FORWARD_HEADERS": ""}, record_headers=False, **spec) as target:
        body = score(target, {"fields": ["x"], "rows": [["1"]]}, headers={"Authorization": "Bearer xyz"})
        assert body["score"] == [["2.0", ""]]


def test_start_up_warns_about_removed_and_blocked_settings(probe_server):
    env = {
        "H2O_SCORER_WORKERS": "4",
        "H2O_SCORER_AUTHORIZATION_HEADER": "Authorization",
        "H2O_SCORER_FORWARD_HEADERS": "Authorization,traceparent",
    }
    with probe_server(env=env, record_headers=False) as target:
        log = target.server_log()
    assert (
        "H2O_SCORER_WORKERS is set but no longer used" in log
        and "SCORING_CONCURRENCY and BATCH_WORKERS" in log
    )
    assert "H2O_SCORER_AUTHORIZATION_HEADER is set but no longer used" in log
    assert "names 'traceparent', a tracing header that is never forwarded" in log


def test_not_ready_while_loading_then_ready(probe_file, tmp_path):
    import subprocess
    import sys

    from conformance._http import request
    from conformance.target import free_port

    port = free_port()
    model = probe_file(load_delay=3)
    process = subprocess.Popen(
        [sys.executable, "-m", "scorer_core.cli", "serve", str(model), "--port", str(port)],
        env={**__import__("os").environ, **plugin_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                live = request(base, "GET", "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "server never came up"
                time.sleep(0.1)
        assert (live.status, live.text) == (200, "OK")
        ready = request(base, "GET", "/readyz")
        assert (ready.status, ready.text) == (500, "Not ready")
        loading = request(base, "POST", "/model/score", {"fields": ["x"], "rows": [["1"]]})
        assert loading.status == 503 and "still loading" in loading.json()["detail"]
        assert loading.headers["retry-after"] == "1", "H2O's clients retry a 503 that says when"
        wait_ready(base, deadline - time.monotonic(), process=process)
        assert request(base, "POST", "/model/score", {"fields": ["x"], "rows": [["1"]]}).status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_load_failure_stops_the_server_with_an_error(probe_file):
    with (
        pytest.raises(RuntimeError) as excinfo,
        start_server(probe_file(load_error="weights are corrupt"), env=plugin_env(), record_headers=False),
    ):
        pass
    message = str(excinfo.value)
    assert "exited with code 1" in message
    assert "Runtime 'probe-scorer' failed to load" in message and "weights are corrupt" in message


def test_request_too_large_is_a_413(probe_server):
    with probe_server(env={"SCORER_MAX_REQUEST_BYTES": "2048"}) as target:
        rows = [["1.0"]] * 1000
        reply = target.post("/model/score", {"fields": ["x"], "rows": rows})
        assert reply.status == 413 and "SCORER_MAX_REQUEST_BYTES" in reply.json()["detail"]


def test_get_score_by_file_is_not_offered(probe_server):
    with probe_server() as target:
        reply = target.get("/model/score?file=/etc/passwd")
        assert reply.status == 501 and "POST the rows" in reply.json()["detail"]


def test_a_runtimes_sample_row_is_the_sample_request(probe_server):
    with probe_server(record_headers=False, sample_row=["7"]) as target:
        assert target.get("/model/sample_request").json() == {"fields": ["x"], "rows": [["7"]]}
    with probe_server(record_headers=False, sample_row=["7"], env={"BATCH_WORKERS": "1"}) as target:
        assert target.get("/model/sample_request").json() == {"fields": ["x"], "rows": [["7"]]}


def test_a_sample_row_of_the_wrong_width_stops_start_up(probe_file):
    from scorer_core.config.settings import load_settings
    from scorer_core.errors import ConfigurationError
    from scorer_core.execution.facts import ModelFacts
    from tests.plugins.probe_plugin import ProbeRuntime

    runtime = ProbeRuntime()
    path = probe_file(sample_row=["1", "2"])
    runtime.load(path)
    with pytest.raises(ConfigurationError, match="set a sample_row of 2 cells for 1 input fields"):
        ModelFacts.of(runtime, path, load_settings())
