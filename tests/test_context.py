from __future__ import annotations

import threading

import pytest

import h2o_scorer_core.context
from scorer_core.context import forwarded_headers, request_headers
from scorer_core.headers import ForwardedHeaders


def test_h2o_alias_is_the_same_context_variable():
    assert h2o_scorer_core.context.request_headers is request_headers


def test_outside_a_model_call_the_headers_are_empty():
    assert request_headers.get({}) == {}
    assert request_headers.get() == {}


def test_forwarded_headers_sets_and_always_resets():
    headers = ForwardedHeaders({"Authorization": "Bearer a"})
    with pytest.raises(RuntimeError, match="model failed"), forwarded_headers(headers):
        assert request_headers.get({}).get("authorization") == "Bearer a"
        raise RuntimeError("model failed")
    assert request_headers.get({}) == {}


def test_each_thread_sees_only_its_own_headers():
    seen: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def call(token: str) -> None:
        with forwarded_headers(ForwardedHeaders({"Authorization": token})):
            barrier.wait()
            seen[token] = request_headers.get({}).get("Authorization", "")

    threads = [threading.Thread(target=call, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": "a", "b": "b"}


def test_seed_example_runs_as_written():
    # The "After (runtimes 2.0.x)" snippet of H2O's migration guide, verbatim in a predict().
    from h2o_scorer_core.context import request_headers

    def predict(self, context, model_input):
        headers = request_headers.get({})  # dict[str, str]
        token = headers.get("Authorization", "")
        return token

    with forwarded_headers(ForwardedHeaders({"Authorization": "Bearer seed"})):
        assert predict(None, None, None) == "Bearer seed"
