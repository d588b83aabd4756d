"""Spans to any OTLP/HTTP endpoint, with OpenTelemetry's exporter, against a loopback receiver
that decodes OTLP protobuf as a Collector would."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import litellm
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from respan_core import Respan, propagate_attributes, wire, workflow

KEY = "respan-otlp-key"


class _Receiver(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((self.path, dict(self.headers), request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _spans(receiver):
    """Received spans as (name, {attribute: value}) pairs."""
    spans = []
    for _, _, request in receiver.received:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    spans.append((span.name, span.trace_id.hex(), attributes))
    return spans


def _value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind)


def _traced_call(name):
    @workflow(name=name)
    def handle():
        with propagate_attributes(customer_identifier="u-otlp", thread_identifier="t-otlp"):
            return litellm.completion(
                model="gpt-4.1-nano", messages=[{"role": "user", "content": "Hello, Collector"}]
            )

    handle()


def test_spans_reach_an_otlp_endpoint_with_identity_and_respan_llm_keys(
    receiver, llm, traced_litellm, monkeypatch
):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
    monkeypatch.delenv("RESPAN_API_KEY", raising=False)
    client = Respan(otlp_endpoint=f"http://127.0.0.1:{receiver.server_port}")
    client.instrument(traced_litellm)

    _traced_call("to_collector")
    assert client.flush(timeout=10)
    client.shutdown()

    assert {path for path, _, _ in receiver.received} == {"/v1/traces"}
    spans = {span_name: attributes for span_name, _, attributes in _spans(receiver)}
    llm_span = spans["completion"]
    assert llm_span["gen_ai.request.model"] == "gpt-4.1-nano"
    assert llm_span["gen_ai.prompt.0.content"] == "Hello, Collector"
    assert llm_span["gen_ai.usage.prompt_tokens"] > 0
    assert llm_span[wire.CUSTOMER_IDENTIFIER] == "u-otlp"
    assert llm_span[wire.THREAD_IDENTIFIER] == "t-otlp"
    assert spans["to_collector.workflow"][wire.SPAN_KIND] == "workflow"
    assert client.local_store is None  # an OTLP endpoint replaces the local store


def test_the_standard_variables_choose_the_endpoint_and_both_destinations_get_the_same(
    receiver, llm, ingest, traced_litellm, monkeypatch
):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.server_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-fleet=web-1")
    client = Respan(api_key=KEY, base_url=ingest.base_url)
    client.instrument(traced_litellm)

    _traced_call("to_both")
    assert client.flush(timeout=10)
    client.shutdown()

    (_, headers, _), *_ = receiver.received
    assert headers["x-fleet"] == "web-1"
    otlp_llm = next(a for n, t, a in _spans(receiver) if n == "completion")
    trace_id = next(t for n, t, a in _spans(receiver) if n == "completion")
    respan_llm = next(
        s.attributes for s in ingest.spans() if s.trace_id == trace_id and s.name == "completion"
    )
    assert otlp_llm == respan_llm


def test_the_traces_specific_variable_is_used_exactly_as_given(receiver, monkeypatch):
    monkeypatch.delenv("RESPAN_API_KEY", raising=False)
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{receiver.server_port}/custom/traces"
    )
    client = Respan()

    workflow(name="exact")(lambda: None)()
    assert client.flush(timeout=10)
    client.shutdown()

    assert {path for path, _, _ in receiver.received} == {"/custom/traces"}
