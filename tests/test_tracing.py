"""OpenTelemetry spans of /model/* requests (SCORER_TRACING): in process with the SDK's in-memory
exporter, and end to end with SCORER_TRACING=otlp exporting to a collector on loopback."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tritonclient_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conformance.target import free_port
from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError
from scorer_core.execution.executors import InProcessExecutor, load_runtime
from scorer_core.server.app import create_app
from scorer_core.service.host import ModelHost
from tests.conftest import PLUGINS_DIR, plugin_env

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    installed = TracerProvider()
    installed.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(installed)
    assert trace.get_tracer_provider() is installed, "another tracer provider was set before"
    return installed


def traced(tmp_path, monkeypatch, requests, mode="on", **settings):
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    sys.modules.pop("probe_plugin", None)
    from probe_plugin import ProbeRuntime

    path = tmp_path / "m.probe"
    path.write_text(json.dumps({"score_delay": 0.01}))
    settings = load_settings(tracing=mode, **settings)
    runtime, facts = load_runtime(ProbeRuntime, path, settings)
    host = ModelHost(executor=InProcessExecutor(runtime, facts, 1))

    async def main():
        app = create_app(settings, host)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
            replies = [await client.request(method, path, **kw) for method, path, kw in requests]
        # A batch's spans are recorded by the batcher just after it answers the requests (its
        # observer runs when the model call returns): wait for them before closing.
        scored = sum(
            1 for r in replies if r.status_code == 200 and r.request.url.path.endswith(("/model/score", "/infer"))
        )
        for _ in range(200):
            if sum(s.name == "scorer.model_call" for s in EXPORTER.get_finished_spans()) >= scored:
                break
            await asyncio.sleep(0.01)
        await host.close()
        return replies

    EXPORTER.clear()
    replies = asyncio.run(main())
    return replies, EXPORTER.get_finished_spans()


def test_a_request_continues_the_callers_trace_with_admission_queue_and_model_spans(tmp_path, monkeypatch):
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    (reply,), spans = traced(
        tmp_path,
        monkeypatch,
        [("POST", "/model/score", {"json": {"fields": ["x"], "rows": [["1"], ["2"]]}, "headers": headers})],
    )
    assert reply.status_code == 200
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"POST /model/score", "scorer.admission", "scorer.batch_wait", "scorer.model_call"}
    root = by_name["POST /model/score"]
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert format(root.parent.span_id, "016x") == PARENT_ID and root.parent.is_remote
    assert root.kind is trace.SpanKind.SERVER
    assert root.attributes["http.response.status_code"] == 200 and root.attributes["scorer.rows"] == 2
    for name in ("scorer.admission", "scorer.batch_wait", "scorer.model_call"):
        span = by_name[name]
        assert (
            span.parent.span_id == root.context.span_id and span.context.trace_id == root.context.trace_id
        ), name
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time, name
    model = by_name["scorer.model_call"]
    assert model.attributes["scorer.batch.rows"] == 2 and model.attributes["scorer.batch.requests"] == 1
    assert model.end_time - model.start_time >= 10_000_000  # the probe's 10 ms score delay


def test_an_open_inference_protocol_request_is_traced_as_an_h2o_one(tmp_path, monkeypatch):
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}]}
    (reply, wrong), spans = traced(
        tmp_path,
        monkeypatch,
        [
            ("POST", "/v2/models/m/infer", {"json": body, "headers": headers}),
            ("GET", "/v2/models/someone-elses", {}),
        ],
    )
    assert reply.status_code == 200 and wrong.status_code == 404
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {
        "POST /v2/models/{name}/infer",
        "GET /v2/models/{name}",
        "scorer.admission",
        "scorer.batch_wait",
        "scorer.model_call",
    }
    root = by_name["POST /v2/models/{name}/infer"]
    assert format(root.context.trace_id, "032x") == TRACE_ID and root.parent.is_remote
    assert root.attributes["url.path"] == "/v2/models/m/infer" and root.attributes["scorer.rows"] == 2
    assert by_name["scorer.model_call"].parent.span_id == root.context.span_id
    assert by_name["GET /v2/models/{name}"].attributes["http.response.status_code"] == 404


def test_a_new_trace_without_traceparent_errors_marked_and_probes_untraced(tmp_path, monkeypatch):
    replies, spans = traced(
        tmp_path,
        monkeypatch,
        [
            ("GET", "/readyz", {}),
            ("GET", "/model/schema", {}),
            ("POST", "/model/score", {"json": {"fields": ["x"], "rows": [["13"]]}}),
        ],
    )
    assert [r.status_code for r in replies] == [200, 200, 500]
    roots = [s for s in spans if s.parent is None]
    assert sorted(s.name for s in roots) == ["GET /model/schema", "POST /model/score"]
    failed = next(s for s in roots if s.name == "POST /model/score")
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.attributes["http.response.status_code"] == 500


def test_tracing_off_makes_no_spans_and_a_bad_mode_is_refused(tmp_path, monkeypatch):
    (reply,), spans = traced(
        tmp_path,
        monkeypatch,
        [("POST", "/model/score", {"json": {"fields": ["x"], "rows": [["1"]]}})],
        mode="off",
    )
    assert reply.status_code == 200 and spans == ()
    with pytest.raises(ConfigurationError, match=r"SCORER_TRACING='xray'.*expected off, on or otlp"):
        load_settings(tracing="xray")


def test_a_refused_request_makes_no_span_and_joins_no_trace(tmp_path, monkeypatch):
    """Spans start after the credential: an anonymous client cannot name spans or join traces."""
    monkeypatch.setenv("SCORER_PASSPHRASE", "pass-1")
    body = {"fields": ["x"], "rows": [["1"]]}
    parent = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    replies, spans = traced(
        tmp_path,
        monkeypatch,
        [
            ("POST", "/model/score", {"json": body, "headers": parent}),
            ("GET", "/model/made-up-path-1234", {"headers": parent}),
            ("POST", "/model/score", {"json": body, "headers": {**parent, "Authorization": "Bearer pass-1"}}),
            ("GET", "/model/made-up-path-1234", {"headers": {"Authorization": "Bearer pass-1"}}),
        ],
    )
    assert [r.status_code for r in replies] == [401, 401, 200, 404]
    roots = sorted(s.name for s in spans if s.parent is None or s.parent.is_remote)
    assert roots == ["GET /model/{other}", "POST /model/score"]  # route names, never the client's path


@pytest.mark.slow
def test_otlp_mode_exports_the_spans_to_a_collector(probe_server):
    """SCORER_TRACING=otlp in a real server process: the spans reach an OTLP/HTTP endpoint."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[ExportTraceServiceRequest] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    grpc_port = free_port()
    env = {
        "SCORER_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_SERVICE_NAME": "credit-risk",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "SCORER_GRPC_PORT": str(grpc_port),
    }
    grpc_call = "inference.GRPCInferenceService/ModelInfer"
    try:
        with probe_server(env=plugin_env(**env), record_headers=False) as target:
            headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            assert (
                target.post("/model/score", {"fields": ["x"], "rows": [["1"]]}, headers=headers).status == 200
            )
            # A gRPC call, its traceparent in the metadata, joins the same trace.
            client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            tensor = tritonclient_grpc.InferInput("x", [1], "FP64")
            tensor.set_data_from_numpy(np.array([2.0]))
            client.infer("model-0", [tensor], headers=headers)  # probe_server's first model file
            client.close()
            deadline = time.monotonic() + 20
            names: set[str] = set()
            calls = 0
            while time.monotonic() < deadline and (grpc_call not in names or calls < 2):
                time.sleep(0.2)
                spans = [
                    (span, resource)
                    for export in received
                    for resource in export.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
                names = {span.name for span, _ in spans}
                calls = sum(span.name == "scorer.model_call" for span, _ in spans)
        assert {"POST /model/score", "scorer.admission", "scorer.batch_wait", "scorer.model_call"} <= names
        (rpc,) = [span for span, _ in spans if span.name == grpc_call]
        rpc_attributes = {a.key: a.value for a in rpc.attributes}
        assert rpc_attributes["rpc.system"].string_value == "grpc"
        assert rpc_attributes["http.response.status_code"].int_value == 200
        assert rpc.parent_span_id.hex() == PARENT_ID
        assert {span.trace_id.hex() for span, _ in spans} == {TRACE_ID}
        services = {
            a.value.string_value for _, r in spans for a in r.resource.attributes if a.key == "service.name"
        }
        assert services == {"credit-risk"}
    finally:
        collector.shutdown()
        collector.server_close()
