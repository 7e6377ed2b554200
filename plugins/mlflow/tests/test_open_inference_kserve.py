"""KServe's own clients score our server: ``InferenceRESTClient`` with ``protocol="v2"`` (binary
tensors and JSON ones, its error path reading our ``{"error": ...}``) and ``InferenceGRPCClient``
on ``SCORER_GRPC_PORT`` (raw contents, NOT_FOUND for a wrong name), from their own venv
(``tests/kserve_client.py``)."""

from __future__ import annotations

import pytest

from conformance import start_server
from conformance.target import free_port
from tests.kserve_client import check_refusals, kserve_answers

pytestmark = pytest.mark.slow

NAME = "credit-mixed"  # the mixed_model fixture's directory
DATATYPES = {"O": "BYTES", "i": "INT64", "f": "FP64"}


def test_kserves_rest_and_grpc_clients_score_as_the_model_does(mixed_model, tmp_path):
    frame = mixed_model.frame
    columns = {name: (DATATYPES[frame[name].dtype.kind], frame[name].tolist()) for name in frame.columns}
    grpc_port = free_port()
    env = {"SCORER_LOAD_PLUGINS": "mlflow", "SCORER_GRPC_PORT": str(grpc_port)}
    with start_server(mixed_model.path, env=env, record_headers=False) as target:
        answers = kserve_answers(target.base_url, f"127.0.0.1:{grpc_port}", NAME, columns, tmp_path)
    expected = mixed_model.model.predict(frame).tolist()
    for spelling, request_id in (("binary", "kserve-1"), ("json", "kserve-1"), ("grpc", "kserve-2")):
        assert answers[spelling] == {"id": request_id, "model_name": NAME, "outputs": {"prediction": expected}}
    check_refusals(answers)
