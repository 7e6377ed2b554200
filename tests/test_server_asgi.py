"""The request path in process, through the ASGI app: fast, so ``pytest -m "not slow"`` covers it.

The probe runtime is loaded by an in-process executor exactly as ``scorer serve`` loads it with
``BATCH_WORKERS=0``; requests go through httpx's ASGI transport instead of a socket. The same
behaviours are also tested over real sockets in test_app_http.py and test_admission_http.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from scorer_core.config.settings import load_settings
from scorer_core.execution.executors import InProcessExecutor, load_runtime
from scorer_core.server.app import DOCS_ASSETS, create_app
from scorer_core.service.host import ModelHost
from tests.conftest import PLUGINS_DIR

X = {"fields": ["x"], "rows": [["1.5"], ["-2"]]}
Client = Callable[..., Any]


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    """``async with serve(spec..., settings={...}) as client``: the app over an in-process executor."""
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    sys.modules.pop("probe_plugin", None)
    from probe_plugin import ProbeRuntime

    @asynccontextmanager
    async def run(settings: dict[str, Any] | None = None, **spec: Any) -> AsyncIterator[httpx.AsyncClient]:
        path = tmp_path / "m.probe"
        path.write_text(json.dumps(spec))
        config = load_settings(**(settings or {}))
        runtime, facts = load_runtime(ProbeRuntime, path, config)
        host = ModelHost(executor=InProcessExecutor(runtime, facts, config.model_threads))
        app = create_app(config, host)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://scorer") as client:
                yield client
        finally:
            await host.close()

    return run


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_score_layout_with_copied_fields_and_a_generated_id(serve):
    async def main():
        async with serve(inputs=[["x", "Float64"], ["name", "Str"]]) as client:
            request = {
                "fields": ["name", "x"],
                "rows": [["a", "1.5"], ["b", "-2"]],
                "includeFieldsInOutput": ["name", "rid"],
                "idField": "rid",
            }
            return await client.post("/model/score", json=request)

    reply = run(main())
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["fields"] == ["name", "rid", "y"]
    assert [row[0] for row in body["score"]] == ["a", "b"]
    assert [row[2] for row in body["score"]] == ["3.0", "-4.0"]
    assert all(len(row[1]) == 36 for row in body["score"]), "a generated UUID per row"


def test_no_field_names_in_output_and_the_deployment_prefix(serve):
    async def main():
        async with serve() as client:
            return await client.post("/abc-123/model/score", json={**X, "noFieldNamesInOutput": True})

    body = run(main()).json()
    assert body["score"] == [["3.0"], ["-4.0"]] and "fields" not in body


@pytest.mark.parametrize(
    ("request_body", "detail"),
    [
        ({"fields": ["x"], "rows": [["1"], ["abc"]]}, "Row 1, field 'x': cannot parse 'abc' as Float64"),
        ({"fields": ["z"], "rows": [["1"]]}, "missing fields required by the model: 'x'"),
        ({"fields": ["x"], "rows": [["1", "2"]]}, "Too many elements in row 0"),
        ({"fields": ["x", "x"], "rows": [["1", "2"]]}, "duplicate fields: 'x'"),
    ],
)
def test_bad_requests_are_400s_naming_the_problem(serve, request_body, detail):
    async def main():
        async with serve() as client:
            return await client.post("/model/score", json=request_body)

    reply = run(main())
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith("Invalid scoring request due to: ")
    assert detail in reply.json()["detail"]


def test_unknown_extra_members_are_tolerated_as_the_contract_says(serve):
    async def main():
        async with serve() as client:
            return await client.post("/model/score", json={**X, "comment": "ignored", "extra": [1, 2]})

    reply = run(main())
    assert reply.status_code == 200 and reply.json()["score"] == [["3.0"], ["-4.0"]]


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("application/vnd.h2o.score+json", 200),
        (None, 200),
        ("application/x-www-form-urlencoded", 415),
        ("text/plain", 415),
        ("multipart/form-data; boundary=x", 415),
    ],
)
def test_a_post_declared_as_anything_but_json_is_a_415(serve, content_type, status):
    async def main():
        async with serve(contributions=["ORIGINAL"], settings={"shapley_enable": "true"}) as client:
            headers = {"content-type": content_type} if content_type else {}
            body = json.dumps(X).encode()
            score = await client.post("/model/score", content=body, headers=headers)
            contribution = await client.post(
                "/model/contribution",
                content=json.dumps({**X, "requestShapleyValueType": "ORIGINAL"}).encode(),
                headers=headers,
            )
            return score, contribution

    for reply in run(main()):
        assert reply.status_code == status, reply.text
        if status == 415:
            assert reply.json()["detail"] == (
                f"Invalid scoring request due to: Content-Type '{content_type.split(';')[0].lower()}' is not "
                "supported; send the body as application/json"
            )


def test_a_body_over_the_limit_is_a_413(serve):
    async def main():
        async with serve(settings={"max_request_bytes": 2048}) as client:
            return await client.post("/model/score", json={"fields": ["x"], "rows": [["1"]] * 1000})

    reply = run(main())
    assert reply.status_code == 413 and "SCORER_MAX_REQUEST_BYTES" in reply.json()["detail"]


def test_a_model_error_is_a_500_and_the_next_request_succeeds(serve):
    async def main():
        async with serve() as client:
            bad = await client.post("/model/score", json={"fields": ["x"], "rows": [["13"]]})
            good = await client.post("/model/score", json=X)
            return bad, good

    bad, good = run(main())
    assert bad.status_code == 500
    assert bad.json()["detail"] == (
        "Failed scoring request due to: Runtime 'probe-scorer' raised ValueError: the probe model exploded"
    )
    assert good.status_code == 200


def test_a_wrong_row_count_is_a_500_naming_both_counts(serve):
    async def main():
        async with serve(behaviour="drop_row") as client:
            return await client.post("/model/score", json=X)

    reply = run(main())
    assert reply.status_code == 500
    assert reply.json()["detail"].endswith("Runtime 'probe-scorer' returned 1 rows for a request of 2 rows")


def test_zero_rows_of_contributions_name_the_features_without_a_zero_row_model_call(serve):
    async def main():
        async with serve(
            contributions=["ORIGINAL"], classes=["a", "b", "c"], settings={"shapley_enable": "true"}
        ) as client:
            empty = await client.post(
                "/model/contribution", json={"fields": ["x"], "rows": [], "requestShapleyValueType": "ORIGINAL"}
            )
            one = await client.post("/model/contribution", json={**X, "requestShapleyValueType": "ORIGINAL"})
            return empty, one

    empty, one = run(main())
    assert empty.status_code == 200, empty.text
    assert empty.json()["features"] == one.json()["features"]
    assert [g["outputGroup"] for g in empty.json()["contributionGroups"]] == ["a", "b", "c"]
    assert all(g["contributions"] == [] for g in empty.json()["contributionGroups"])


def test_overload_is_a_503_with_retry_after(serve):
    async def main():
        settings = {"scoring_concurrency": 1, "queue_size": 0}
        async with serve(score_delay=0.3, settings=settings) as client:
            return await asyncio.gather(*(client.post("/model/score", json=X) for _ in range(3)))

    replies = run(main())
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 503, 503]
    rejected = [r for r in replies if r.status_code == 503]
    assert all(r.headers["retry-after"] == "5" for r in rejected)
    assert "SCORING_CONCURRENCY" in rejected[0].json()["detail"]


def test_a_request_past_its_deadline_is_a_504(serve):
    async def main():
        async with serve(score_delay=1.0, settings={"request_timeout": 0.2}) as client:
            return await client.post("/model/score", json=X)

    reply = run(main())
    assert reply.status_code == 504 and "SCORER_REQUEST_TIMEOUT" in reply.json()["detail"]


def test_metadata_endpoints(serve):
    async def main():
        async with serve(model_id="m-1", sample_row=["7"]) as client:
            paths = ["/model/id", "/model/schema", "/model/capabilities", "/model/sample_request", "/readyz"]
            return [await client.get(p) for p in paths]

    model_id, schema, capabilities, sample, ready = run(main())
    assert model_id.text == "m-1"
    assert schema.json()["schema"]["inputFields"] == [{"name": "x", "dataType": "Float64"}]
    assert capabilities.json() == ["SCORE"]
    assert sample.json() == {"fields": ["x"], "rows": [["7"]]}
    assert ready.text == "Ready"


def test_docs_load_swagger_ui_from_the_server_not_a_cdn(serve):
    async def main():
        async with serve() as client:
            page = await client.get("/docs")
            prefixed = await client.get("/abc-123/docs")
            script = await client.get(f"{DOCS_ASSETS}/swagger-ui-bundle.js")
            style = await client.get(f"{DOCS_ASSETS}/swagger-ui.css")
            prefixed_script = await client.get(f"/abc-123{DOCS_ASSETS}/swagger-ui-bundle.js")
            prefixed_spec = await client.get("/abc-123/openapi.json")
            return page, prefixed, script, style, prefixed_script, prefixed_spec

    page, prefixed, script, style, prefixed_script, prefixed_spec = run(main())
    assert page.status_code == 200 and prefixed.status_code == 200
    # Relative, so that under /<deployment-id>/docs the browser asks for /<deployment-id>/...
    assert 'src="docs-assets/swagger-ui-bundle.js"' in page.text
    assert 'href="docs-assets/swagger-ui.css"' in page.text
    assert "url: 'openapi.json'" in page.text
    assert prefixed_script.status_code == 200 and prefixed_spec.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body>")[-1]
    assert script.status_code == 200 and len(script.content) > 100_000
    assert style.status_code == 200 and "swagger-ui" in style.text


def test_a_model_that_is_still_loading_is_a_503_and_not_ready():
    async def main():
        host = ModelHost(lambda: None)  # type: ignore[arg-type,return-value]
        app = create_app(load_settings(), host)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
            return await client.post("/model/score", json=X), await client.get("/readyz")

    score, ready = run(main())
    assert score.status_code == 503 and "still loading" in score.json()["detail"]
    assert ready.status_code == 500 and ready.text == "Not ready"


def test_the_scoring_posts_skip_the_framework_stack_and_keep_its_error_answers(serve, caplog):
    """POST /model/score and /model/contribution are called directly (the framework's stack was
    60% of a single-row request's time); every other path still goes through FastAPI."""

    async def main():
        async with serve() as client:
            app = client._transport.app  # type: ignore[attr-defined]
            through_framework: list[str] = []

            @app.api.middleware("http")
            async def count(request, call_next):
                through_framework.append(request.url.path)
                return await call_next(request)

            app.api.middleware_stack = None  # rebuilt with the counter on the next request
            replies = [
                await client.post("/model/score", json=X),
                await client.post("/dep-1/model/score", json=X),
                await client.post("/model/score", json={"fields": ["x"], "rows": [["13"]]}),
                await client.post("/model/score", content=b"{", headers={"content-type": "application/json"}),
                await client.get("/model/score"),
                await client.get("/dep-1/healthz"),
            ]
            return replies, through_framework

    replies, through_framework = run(main())
    ok, prefixed, failed, malformed, get, health = replies
    assert ok.status_code == 200 and prefixed.json() == ok.json()
    assert failed.status_code == 500 and "Failed scoring request" in failed.json()["detail"]
    assert malformed.status_code == 400 and malformed.json()["detail"].startswith("Invalid scoring request")
    assert get.status_code == 501 and health.text == "OK"
    assert through_framework == ["/model/score", "/healthz"], "only the GET and the probe"
    assert "POST /model/score failed" in caplog.text, "a model error is logged as the framework did"


@pytest.mark.parametrize(
    ("path", "root_path", "seen"),
    [
        ("/model/score", "", "/model/score"),
        ("/dep-1/model/score", "", "/model/score"),
        # Mounted under a path (Ray Serve's route_prefix): ASGI keeps it in path and root_path.
        ("/iris/model/score", "/iris", "/model/score"),
        ("/iris/dep-1/model/score", "/iris", "/model/score"),
        ("/iris", "/iris", "/"),
        # A root_path that is only the start of a segment is not the mount.
        ("/irises/model/score", "/iris", "/model/score"),
    ],
)
def test_the_deployment_prefix_is_the_segment_after_the_mount(path, root_path, seen):
    from scorer_core.server.front import unprefixed

    scope = unprefixed({"type": "http", "path": path, "raw_path": path.encode(), "root_path": root_path})
    assert scope["path"] == seen and scope["raw_path"] == seen.encode()


@pytest.mark.parametrize("root_path", ["/docs", "/metrics", "/healthz-x", "/iris"])
@pytest.mark.parametrize("path", ["/dep/docs/model/schema", "/model/schema", "/iris/model/schema", "/docs/model/schema"])
def test_a_root_path_never_lets_a_request_past_the_credential_gate(tmp_path, monkeypatch, root_path, path):
    """httpx's transport sends root_path beside a path that lacks it (as some proxies'
    middleware does): whatever the two hold, /model/* answers only with the passphrase."""
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    sys.modules.pop("probe_plugin", None)
    from probe_plugin import ProbeRuntime

    model = tmp_path / "m.probe"
    model.write_text("{}")
    config = load_settings(passphrase="s3cret")
    runtime, facts = load_runtime(ProbeRuntime, model, config)
    host = ModelHost(executor=InProcessExecutor(runtime, facts, config.model_threads))
    app = create_app(config, host)

    async def go() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://scorer") as client:
            anonymous = await client.get(path)
            scored = await client.post(path.replace("schema", "score"), json=X)
            allowed = await client.get(path, headers={"Authorization": "Bearer s3cret"})
        await host.close()
        return anonymous.status_code, scored.status_code, allowed.status_code

    anonymous, scored, allowed = run(go())
    assert anonymous != 200 and scored != 200
    if allowed == 200:  # a path the app serves: the gate stood in front of it
        assert anonymous == 401 and scored == 401


def test_an_unexpected_error_is_a_500_in_each_protocols_spelling(serve, monkeypatch):
    """A bug in the server itself (not a ScorerError): H2O's prefixed detail, or OIP's error."""
    import scorer_core.server.h2o_routes as h2o_routes
    import scorer_core.server.oip_routes as oip_routes

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(h2o_routes, "_parse_score", broken)
    monkeypatch.setattr(oip_routes, "parse_infer", broken)

    async def main():
        async with serve() as client:
            h2o = await client.post("/model/score", json=X)
            body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
            oip = await client.post("/v2/models/m/infer", json=body)
            return h2o, oip

    h2o, oip = run(main())
    assert (h2o.status_code, h2o.json()) == (500, {"detail": "Failed scoring request due to: RuntimeError: a bug"})
    assert (oip.status_code, oip.json()) == (500, {"error": "RuntimeError: a bug"})


def test_only_a_request_kept_as_cells_carries_its_body_to_monitoring(serve, monkeypatch):
    # Monitoring reads a single row's cells again from its body, in its export process; a body
    # whose rows were typed at once (more than KEPT_ROWS of them) is of no use there, and held
    # in the monitoring queue beside its rows it would only cost memory.
    from scorer_core.monitor.monitor import Monitor

    told: list[Any] = []

    class Recording:
        name = "recording"

        def offer(self, scored: Any) -> None:
            told.append(scored)

        def start(self) -> None: ...

        def close(self, timeout: float) -> None: ...

        def snapshots(self) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(Monitor, "from_settings", classmethod(lambda cls, settings: cls([Recording()])))
    one = {"fields": ["x"], "rows": [["1.5"]]}
    many = {"fields": ["x"], "rows": [[f"{i}.5"] for i in range(100)]}  # 13 would explode the probe

    async def main():
        async with serve() as client:
            for body in (one, many):
                reply = await client.post("/model/score", json=body)
                assert reply.status_code == 200, reply.text

    run(main())
    assert [type(scored.frame).__name__ for scored in told] == ["CellRows", "Frame"]
    assert json.loads(told[0].score_body) == one
    assert told[1].score_body is None
