from __future__ import annotations

import json
import pickle

import pytest

from scorer_core.config.forwarding import HeaderForwarding, is_tracing_header
from scorer_core.headers import ForwardedHeaders


def test_parse_ignores_case_whitespace_empties_and_duplicates():
    rule = HeaderForwarding.parse(" Authorization , x-tenant,,AUTHORIZATION ")
    assert rule.names == ("Authorization", "x-tenant")


@pytest.mark.parametrize(
    "name",
    [
        "traceparent",
        "TraceState",
        "baggage",
        "b3",
        "X-B3-TraceId",
        "x-b3-spanid",
        "uber-trace-id",
        "X-Request-Id",
        "x-amzn-trace-id",
        "X-Cloud-Trace-Context",
        "grpc-trace-bin",
        "sentry-trace",
        "x-correlation-id",
        "uberctx-user",
    ],
)
def test_tracing_headers_are_blocked(name):
    assert is_tracing_header(name)
    rule = HeaderForwarding.parse(f"Authorization,{name}")
    assert rule.names == ("Authorization",) and rule.blocked == (name,)


def test_blocked_configured_headers_produce_one_warning_each():
    rule = HeaderForwarding.parse("traceparent,X-Request-Id,Authorization")
    assert rule.warnings() == [
        "H2O_SCORER_FORWARD_HEADERS names 'traceparent', a tracing header that is never forwarded; ignoring it",
        "H2O_SCORER_FORWARD_HEADERS names 'X-Request-Id', a tracing header that is never forwarded; ignoring it",
    ]


def test_select_keys_headers_as_the_operator_wrote_them():
    rule = HeaderForwarding.parse("Authorization,X-Tenant")
    selected = rule.select({"authorization": "Bearer a", "x-other": "no", "traceparent": "t"})
    assert selected == {"Authorization": "Bearer a"}


def test_forwarded_headers_answer_to_any_case():
    headers = ForwardedHeaders({"Authorization": "Bearer a"})
    assert headers.get("authorization") == "Bearer a"
    assert headers["AUTHORIZATION"] == "Bearer a"
    assert "aUtHoRiZaTiOn" in headers
    assert headers.get("missing", "") == ""


def test_forwarded_headers_are_a_dict_that_serialises():
    headers = ForwardedHeaders({"Authorization": "Bearer a"})
    assert isinstance(headers, dict)
    assert json.loads(json.dumps(headers)) == {"Authorization": "Bearer a"}
    assert pickle.loads(pickle.dumps(headers)).get("AUTHORIZATION") == "Bearer a"


def test_forwarded_headers_are_read_only():
    headers = ForwardedHeaders({"Authorization": "Bearer a"})
    with pytest.raises(TypeError, match="read-only"):
        headers["Authorization"] = "Bearer b"
    with pytest.raises(TypeError):
        headers.update(x="y")
    assert dict(headers) == {"Authorization": "Bearer a"}
