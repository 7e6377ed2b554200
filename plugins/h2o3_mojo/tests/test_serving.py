"""h2o3-mojo-scorer behind the real HTTP server: conformance, configuration and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from scorer_h2o3_mojo.plugin import configured_mojo

import conformance
from conformance import start_server

from .conftest import MOJOS, TEST_FRAME, expected

pytestmark = pytest.mark.slow
ONLY_THIS_PLUGIN = {"SCORER_LOAD_PLUGINS": "h2o3_mojo"}


class TestGbmBinomialConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(
        MOJOS / "gbm_binomial.zip", env={**ONLY_THIS_PLUGIN, "SHAPLEY_ENABLE": "true"}
    )


class TestXgboostRegressionConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(
        MOJOS / "xgboost_regression.zip", env={**ONLY_THIS_PLUGIN, "SHAPLEY_TYPES_ENABLED": "ALL"}
    )


class TestKMeansConformance(conformance.RuntimeSuite):
    scorer_target = conformance.served(MOJOS / "kmeans.zip", env=ONLY_THIS_PLUGIN)


class TestGlmMultinomialInAWorkerProcess(conformance.RuntimeSuite):
    """One JVM per worker process: the contract still holds."""

    scorer_target = conformance.served(
        MOJOS / "glm_multinomial.zip", env={**ONLY_THIS_PLUGIN, "BATCH_WORKERS": "1"}
    )


@pytest.fixture(scope="module")
def gbm_server():
    """gbm_binomial served through SCORER_MOJO_PATH, with only ORIGINAL contributions enabled."""
    env = {
        **ONLY_THIS_PLUGIN,
        "SCORER_MOJO_PATH": str(MOJOS / "gbm_binomial.zip"),
        "SHAPLEY_TYPES_ENABLED": "ORIGINAL",
    }
    with start_server(None, env=env, record_headers=False) as target:
        yield target


def test_scorer_mojo_path_serves_the_mojo_with_its_uuid_as_model_id(gbm_server, load_mojo):
    assert gbm_server.get("/model/id").text == load_mojo("gbm_binomial").model_id
    assert gbm_server.get("/model/id").text.lstrip("-").isdigit()
    reply = gbm_server.post("/model/score", TEST_FRAME)
    assert reply.status == 200, reply.text
    labels = [row[0] for row in reply.json()["score"]]
    assert labels == [row[0] for row in expected("gbm_binomial")["predictions"]["rows"]]


def test_score_with_contributions_over_http(gbm_server):
    reply = gbm_server.post("/model/score", {**TEST_FRAME, "requestShapleyValueType": "ORIGINAL"})
    assert reply.status == 200, reply.text
    shapley = reply.json()["featureShapleyContributions"]
    assert shapley["features"] == ["age", "income", "color", "size", "visits", "BiasTerm"]
    [group] = shapley["contributionGroups"]
    wanted = expected("gbm_binomial")["contributions"]["compact"]["rows"]
    ours = [float(c) for row in group["contributions"] for c in row]
    assert ours == pytest.approx([c for row in wanted for c in row], rel=1e-9)


def test_capabilities_list_only_the_enabled_types(gbm_server):
    assert gbm_server.get("/model/capabilities").json() == ["SCORE", "CONTRIBUTION_ORIGINAL"]


def test_transformed_on_a_gbm_is_unsupported(gbm_server):
    reply = gbm_server.post("/model/contribution", {**TEST_FRAME, "requestShapleyValueType": "TRANSFORMED"})
    assert reply.status == 501
    assert "TRANSFORMED are not supported by this model" in reply.json()["detail"]


def test_a_type_not_enabled_is_a_400_naming_the_setting():
    env = {**ONLY_THIS_PLUGIN, "SHAPLEY_TYPES_ENABLED": "ORIGINAL"}
    with start_server(MOJOS / "xgboost_binomial.zip", env=env, record_headers=False) as target:
        reply = target.post("/model/contribution", {**TEST_FRAME, "requestShapleyValueType": "TRANSFORMED"})
        assert reply.status == 400
        assert "SHAPLEY_TYPES_ENABLED" in reply.json()["detail"]
        assert target.get("/model/capabilities").json() == ["SCORE", "CONTRIBUTION_ORIGINAL"]


def test_contributions_are_off_unless_enabled():
    with start_server(MOJOS / "gbm_regression.zip", env=ONLY_THIS_PLUGIN, record_headers=False) as target:
        assert target.get("/model/capabilities").json() == ["SCORE"]
        reply = target.post("/model/contribution", {**TEST_FRAME, "requestShapleyValueType": "ORIGINAL"})
        assert reply.status == 400
        assert "SHAPLEY_ENABLE=true" in reply.json()["detail"]


@pytest.mark.parametrize("variable", ["JAVA_OPTS", "JAVA_TOOL_OPTIONS"])
def test_mojo_path_system_property_is_read_from_java_options(monkeypatch, variable, tmp_path):
    for name in ("SCORER_MOJO_PATH", "JAVA_OPTS", "JAVA_TOOL_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert configured_mojo() is None
    monkeypatch.setenv(variable, f"-Xmx1g '-Dmojo.path={tmp_path / 'my model.zip'}' -Dother=1")
    configured = configured_mojo()
    assert configured is not None
    assert (configured.path, configured.runtime, configured.source) == (
        tmp_path / "my model.zip",
        "h2o3-mojo-scorer",
        f"-Dmojo.path in {variable}",
    )
    monkeypatch.setenv("SCORER_MOJO_PATH", "/models/first.zip")
    assert configured_mojo().source == "SCORER_MOJO_PATH"


def test_java_opts_mojo_path_serves_over_http():
    env = {**ONLY_THIS_PLUGIN, "JAVA_OPTS": f"-Xmx512m -Dmojo.path={MOJOS / 'drf_regression.zip'}"}
    with start_server(None, env=env, record_headers=False) as target:
        reply = target.post("/model/score", TEST_FRAME)
        assert reply.status == 200, reply.text
        wanted = [row[0] for row in expected("drf_regression")["predictions"]["rows"]]
        assert [float(row[0]) for row in reply.json()["score"]] == pytest.approx(wanted, rel=1e-9)


def scorer(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "scorer_core.cli", "serve", "--port", "0", *args],
        env={**os.environ, **ONLY_THIS_PLUGIN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_mojo_path_names_the_variable(tmp_path):
    result = scorer(env={"SCORER_MOJO_PATH": str(tmp_path / "gone.zip")})
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"scorer: error: SCORER_MOJO_PATH '{tmp_path / 'gone.zip'}' does not exist"
    )


def test_a_zip_that_is_not_a_mojo_is_not_detected_and_is_refused_when_forced(tmp_path):
    archive = tmp_path / "weights.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("weights.bin", b"\0")
    detected = scorer(str(archive))
    assert detected.returncode == 2 and "No installed runtime can load" in detected.stderr
    forced = scorer(str(archive), "--runtime", "h2o3-mojo-scorer")
    assert forced.returncode == 2 and "Listening on http" not in forced.stderr
    assert (
        f"'{archive}' is not an H2O-3 MOJO: expected a .zip or .mojo file exported by H2O-3" in forced.stderr
    )


def test_a_corrupt_mojo_is_a_clear_start_up_error(tmp_path):
    archive = tmp_path / "model.mojo"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("model.ini", "[info]\nalgo = gbm\n")
    result = scorer(str(archive))
    assert result.returncode == 1
    assert f"genmodel cannot read the MOJO '{archive}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_cells_are_a_400_naming_row_and_column(gbm_server):
    rows = [list(r) for r in TEST_FRAME["rows"][:3]]
    rows[2][0] = "forty"
    reply = gbm_server.post("/model/score", {"fields": TEST_FRAME["fields"], "rows": rows})
    assert reply.status == 400
    detail = reply.json()["detail"]
    assert "Row 2, field 'age'" in detail
    assert gbm_server.post("/model/score", TEST_FRAME).status == 200


@pytest.mark.parametrize("workers", ["0", "1"])
def test_the_server_exits_promptly_on_sigterm_after_scoring(workers):
    """The JVM must not keep the process alive: jpype's shutdown waits on attached threads."""
    env = {**ONLY_THIS_PLUGIN, "BATCH_WORKERS": workers}
    with start_server(MOJOS / "gbm_regression.zip", env=env, record_headers=False) as target:
        assert target.post("/model/score", TEST_FRAME).status == 200
        target.process.terminate()
        # A graceful stop exits 0; the JVM's own handler would have exited at once with 143,
        # and a thread left attached would hang the exit.
        assert target.process.wait(timeout=15) == 0
        assert "Finished server process" in target.server_log()


def test_the_open_inference_protocol_scores_a_mojo_as_h2o_3_does(gbm_server):
    """tritonclient, one input per field in the datatype the model's metadata declares; a missing
    cell is JSON null. Predictions and class probabilities equal H2O-3's own."""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(gbm_server.base_url.split("//", 1)[1].rstrip("/"))
    try:
        metadata = client.get_model_metadata("gbm_binomial")
        declared = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
        assert declared == {
            "age": "FP64",
            "income": "FP64",
            "color": "BYTES",
            "size": "BYTES",
            "visits": "FP64",
        }
        columns = list(zip(*TEST_FRAME["rows"], strict=True))
        inputs = []
        for name, cells in zip(TEST_FRAME["fields"], columns, strict=True):
            tensor = triton.InferInput(name, [len(cells)], declared[name])
            if declared[name] == "BYTES":
                tensor.set_data_from_numpy(np.array(cells, dtype=object))
            else:
                tensor.set_data_from_numpy(np.array([float(c) if c else np.nan for c in cells]))
            inputs.append(tensor)
        result = client.infer("gbm_binomial", inputs)
    finally:
        client.close()
    want = expected("gbm_binomial")["predictions"]
    assert [o["name"] for o in result.get_response()["outputs"]] == want["fields"]
    labels = result.as_numpy("predict")
    assert [v.decode() if isinstance(v, bytes) else v for v in labels.tolist()] == [
        r[0] for r in want["rows"]
    ]
    np.testing.assert_allclose(result.as_numpy("yes"), [r[2] for r in want["rows"]], rtol=1e-9)


def test_kserves_clients_and_tritonclient_grpc_score_a_mojo_as_h2o_3_does(tmp_path):
    """The MOJO over gRPC (tritonclient.grpc, KServe's InferenceGRPCClient) and KServe's REST
    client: labels and class probabilities equal H2O-3's own, a missing cell sent as NaN."""
    import numpy as np
    import tritonclient.grpc as triton

    from conformance.target import free_port
    from tests.kserve_client import check_refusals, kserve_answers

    grpc_port = free_port()
    env = {
        **ONLY_THIS_PLUGIN,
        "SCORER_MOJO_PATH": str(MOJOS / "gbm_binomial.zip"),
        "SCORER_GRPC_PORT": str(grpc_port),
    }
    strings = {"color", "size"}
    columns = {
        name: ("BYTES", list(cells))
        if name in strings
        else ("FP64", [float(c) if c else None for c in cells])
        for name, cells in zip(TEST_FRAME["fields"], zip(*TEST_FRAME["rows"], strict=True), strict=True)
    }
    want = expected("gbm_binomial")["predictions"]
    labels, yes = [r[0] for r in want["rows"]], [r[2] for r in want["rows"]]
    with start_server(None, env=env, record_headers=False) as target:
        client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            inputs = []
            for name, (datatype, values) in columns.items():
                tensor = triton.InferInput(name, [len(values)], datatype)
                array = (
                    np.array(values, dtype=object) if datatype == "BYTES" else np.array(values, dtype=float)
                )
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            result = client.infer("gbm_binomial", inputs)
        finally:
            client.close()
        answers = kserve_answers(target.base_url, f"127.0.0.1:{grpc_port}", "gbm_binomial", columns, tmp_path)
    assert [v.decode() for v in result.as_numpy("predict").tolist()] == labels
    np.testing.assert_allclose(result.as_numpy("yes"), yes, rtol=1e-9)
    for spelling in ("binary", "json", "grpc"):
        outputs = answers[spelling]["outputs"]
        assert list(outputs) == want["fields"], spelling
        assert outputs["predict"] == labels, spelling
        np.testing.assert_allclose(outputs["yes"], yes, rtol=1e-9)
    check_refusals(answers)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_mojo_replaced_by_another_while_serving_shares_the_jvm_and_answers_as_h2o(workers):
    """In the server process the JVM outlives each MOJO: replacing one must leave it running for
    the next (a runtime that shut it down on close would break every later model)."""
    env = {**ONLY_THIS_PLUGIN, "BATCH_WORKERS": workers, "SCORER_ADMIN_PASSPHRASE": "a-long-admin-passphrase"}
    admin = {"X-Admin-Passphrase": env["SCORER_ADMIN_PASSPHRASE"]}
    with start_server(MOJOS / "gbm_regression.zip", env=env, record_headers=False) as target:
        for name in ("drf_regression", "glm_regression", "gbm_regression"):
            # GLM orders its inputs otherwise: a change a client sending tensors would notice.
            body = {"path": str(MOJOS / f"{name}.zip"), "schema_change": True}
            reply = target.post("/admin/model", body, headers=admin, timeout=300)
            assert reply.status == 200, reply.text
            answer = target.post("/model/score", TEST_FRAME)
            assert answer.status == 200, answer.text
            wanted = [row[0] for row in expected(name)["predictions"]["rows"]]
            assert [float(row[0]) for row in answer.json()["score"]] == pytest.approx(wanted, rel=1e-9), name
