"""The deployment's credential over real HTTP: H2O's two Python clients, every passphrase kind,
OIDC tokens, open probes, and start-up refusals of bad settings."""

from __future__ import annotations

import json
import socket
import time
import types

import bcrypt
import pandas as pd
import pytest

from conformance.target import free_port
from tests.conftest import plugin_env
from tests.test_auth import AUDIENCE, ISSUER, JwksServer, jwks, make_keys, pbkdf2_hash, token
from tests.test_cli import scorer

pytestmark = pytest.mark.slow

PASSPHRASE = "correct horse battery staple"
SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}
BODY = {"fields": ["x"], "rows": [["1.5"], ["2"]]}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def scoring_client(target, passphrase: str | None) -> pd.DataFrame:
    """h2o-mlops-scoring-client's pandas path, as its users call it (it sends the id column
    beside the model's fields, and puts it back on the answer)."""
    import h2o_mlops_scoring_client

    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0, 2.5, -1.0]})
    return h2o_mlops_scoring_client.score_data_frame(
        mlops_endpoint_url=target.base_url + "/deployment-1/model/score",
        id_column="id",
        data_frame=frame,
        passphrase=passphrase,
        cpus=1,
    )


def mlops_scorer(target):
    """h2o-mlops's deployment scorer, its platform client reduced to what its scoring path reads
    (the TLS setting); the request, its headers and its error handling are the library's own."""
    from h2o_mlops import h2o_mlops_autogen, options
    from h2o_mlops._deployments import MLOpsDeploymentScorer

    metadata = h2o_mlops_autogen.V2DeploymentMetadata(
        name="deployment-1",
        scoring_interface=h2o_mlops_autogen.V2ScoringInterface(
            score=h2o_mlops_autogen.V2ScoringEndpoint(uri=target.base_url + "/deployment-1/model/score")
        ),
    )
    security = options.SecurityOptions(passphrase="unused-by-scoring")
    return MLOpsDeploymentScorer(types.SimpleNamespace(_ssl_context=True), metadata, security)


@pytest.mark.parametrize(
    "setting",
    [
        {"SCORER_PASSPHRASE": PASSPHRASE},
        {"SCORER_PASSPHRASE_HASH": bcrypt.hashpw(PASSPHRASE.encode(), bcrypt.gensalt(6)).decode()},
        {"SCORER_PASSPHRASE_HASH": pbkdf2_hash(PASSPHRASE.encode(), function="sha512", iterations=210_000)},
    ],
    ids=["plaintext", "bcrypt", "pbkdf2"],
)
def test_both_h2o_clients_score_with_the_passphrase_and_are_refused_without(probe_server, setting):
    from h2o_mlops.errors import MLOpsScoringError
    from requests import HTTPError

    with probe_server(env=setting, record_headers=False, **SPEC) as target:
        scored = scoring_client(target, PASSPHRASE)
        assert list(scored["y"]) == [2.0, 5.0, -2.0]
        assert list(scored["id"]) == ["a", "b", "c"]
        for wrong in ("not it", None):
            with pytest.raises(HTTPError, match="401"):
                scoring_client(target, wrong)

        scorer_ = mlops_scorer(target)
        assert scorer_.score(BODY, auth_value=PASSPHRASE)["score"] == [["3.0"], ["4.0"]]
        with pytest.raises(MLOpsScoringError, match="401"):
            scorer_.score(BODY, auth_value="not it")
        assert PASSPHRASE not in target.server_log()
        assert "Every /model/* endpoint needs" in target.server_log()


def test_an_open_deployment_says_so_at_start_up(probe_server):
    with probe_server(record_headers=False, **SPEC) as target:
        assert target.post("/model/score", BODY).status == 200
        assert "No credential is configured" in target.server_log()
        assert "every /model/* endpoint is open" in target.server_log()


def test_every_model_endpoint_needs_the_credential_and_the_probes_do_not(probe_server):
    with probe_server(env={"SCORER_PASSPHRASE": PASSPHRASE}, record_headers=False, **SPEC) as target:
        for method, path in [
            ("POST", "/model/score"),
            ("POST", "/model/contribution"),
            ("GET", "/model/schema"),
            ("GET", "/model/id"),
            ("GET", "/model/capabilities"),
            ("GET", "/model/sample_request"),
            ("GET", "/model/score"),
            ("POST", "/d-1/model/score"),  # under a deployment prefix as well
        ]:
            send = target.post if method == "POST" else target.get
            body = BODY if method == "POST" else None
            refused = send(path, body) if body else send(path)
            assert refused.status == 401, (path, refused)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in refused.json()["detail"]
            wrong = send(path, body, headers=bearer("nope")) if body else send(path, headers=bearer("nope"))
            assert wrong.status == 401
            assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            assert wrong.json() == {"detail": "Unauthorized: the passphrase is wrong"}
            right = (
                send(path, body, headers=bearer(PASSPHRASE))
                if body
                else send(path, headers=bearer(PASSPHRASE))
            )
            assert right.status != 401, (path, right)
        for path in ("/healthz", "/readyz", "/openapi.json", "/d-1/readyz"):
            assert target.get(path).status == 200, path


def test_a_refused_upload_closes_its_connection_and_the_server_keeps_serving(probe_server):
    """A 401 comes before the body is read: the connection closes rather than read 1 MB for nothing."""
    with probe_server(env={"SCORER_PASSPHRASE": PASSPHRASE}, record_headers=False, **SPEC) as target:
        port = int(target.base_url.rsplit(":", 1)[1])
        body = b'{"fields":["x"],"rows":[' + b",".join([b'["1"]'] * 100_000) + b"]}"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"POST /model/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401")
        assert b"connection: close" in answer.lower()
        assert target.post("/model/score", BODY, headers=bearer(PASSPHRASE)).status == 200


def test_oidc_tokens_from_a_jwks_file(probe_server, tmp_path):
    keys = make_keys()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(keys, "k1")))
    env = {"SCORER_OIDC_ISSUER": ISSUER, "SCORER_OIDC_AUDIENCE": AUDIENCE, "SCORER_OIDC_JWKS": str(path)}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        assert target.post("/model/score", BODY, headers=bearer(token(keys))).status == 200
        for bad, reason in (
            (token(keys, exp=int(time.time()) - 120), "the token has expired"),
            (token(keys, aud="other"), "not for this audience"),
            (token(keys, "stranger"), "does not know"),
        ):
            refused = target.post("/model/score", BODY, headers=bearer(bad))
            assert refused.status == 401 and reason in refused.json()["detail"]
        assert mlops_scorer(target).score(BODY, auth_value=token(keys))["score"] == [["3.0"], ["4.0"]]


def test_a_jwks_url_that_dribbles_costs_the_first_token_request_5_s_not_minutes(probe_server):
    """A JWKS URL answering one byte every 2 s held the first token request for as long as it
    liked; now the fetch ends at its 5 s deadline, the request gets 503, and the server serves."""
    from concurrent.futures import ThreadPoolExecutor

    keys = make_keys()
    dribbler = JwksServer(jwks(keys, "k1"), dribble="head")
    env = {"SCORER_OIDC_ISSUER": ISSUER, "SCORER_OIDC_AUDIENCE": AUDIENCE, "SCORER_OIDC_JWKS": dribbler.url}
    try:
        with probe_server(env=env, record_headers=False, **SPEC) as target, ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            first = pool.submit(target.post, "/model/score", BODY, headers=bearer(token(keys)), timeout=30)
            while dribbler.fetches == 0 and time.monotonic() - started < 10:
                time.sleep(0.05)
            assert dribbler.fetches == 1
            assert target.get("/healthz", timeout=5).status == 200  # served while the fetch hangs
            refused = first.result(timeout=30)
            took = time.monotonic() - started
            assert refused.status == 503, refused
            assert "OIDC signing keys could not be fetched" in refused.json()["detail"]
            assert took < 15, took  # the 5 s deadline, with room for a loaded machine
            assert "no complete answer within 5 s" in target.server_log()
    finally:
        dribbler.close()


def test_a_jwt_shaped_passphrase_passes_while_the_jwks_url_is_unreachable(probe_server):
    """With OIDC and a passphrase configured, a credential that parses as a JWT is tried as a token
    first; keys that could not be fetched answered 503 and the passphrase was never checked. (A
    passphrase such as ``a.b.c``, whose header is no JWT's, was refused as a token and then checked
    as a passphrase already: the passphrase must look like a token for the keys to be needed.)"""
    keys = make_keys()
    passphrase = token(keys)  # a token of some other issuer, kept as the deployment's passphrase
    unreachable = f"http://127.0.0.1:{free_port()}/jwks"  # nothing listens there
    env = {
        "SCORER_PASSPHRASE": passphrase,
        "SCORER_OIDC_ISSUER": ISSUER,
        "SCORER_OIDC_AUDIENCE": AUDIENCE,
        "SCORER_OIDC_JWKS": unreachable,
    }
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        for _ in range(2):  # the first request fetches and fails; the second finds no keys known
            assert target.post("/model/score", BODY, headers=bearer(passphrase), timeout=30).status == 200
        assert target.post("/model/score", BODY, headers=bearer("a.b.c"), timeout=30).status == 401
        # Another token may be one the keys would accept: still 503 (retry), not 401.
        refused = target.post("/model/score", BODY, headers=bearer(token(keys, "k2")), timeout=30)
        assert refused.status == 503, refused
        assert "OIDC signing keys could not be fetched" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SCORER_PASSPHRASE": "a", "SCORER_PASSPHRASE_HASH": pbkdf2_hash(b"a")},
            "Both SCORER_PASSPHRASE and",
        ),
        ({"SCORER_PASSPHRASE_HASH": "pbkdf2:md5:1000$c2FsdA$c2FsdHNhbHRzYWx0c2FsdA"}, "hash function 'md5'"),
        ({"SCORER_PASSPHRASE_HASH": "$2b$12$tooshort"}, "looks like a bcrypt hash but is not one"),
        ({"SCORER_OIDC_ISSUER": ISSUER}, "missing SCORER_OIDC_AUDIENCE, SCORER_OIDC_JWKS"),
    ],
)
def test_a_bad_credential_setting_stops_start_up_with_one_line(probe_file, env, message):
    port = free_port()
    result = scorer("serve", str(probe_file(**SPEC)), "--port", str(port), env=plugin_env(**env))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("scorer: error: ") and message in lines[0], result.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing was left listening
