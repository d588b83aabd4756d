"""Export to any OTLP/HTTP endpoint, such as an OpenTelemetry Collector, with OpenTelemetry's own
exporter (`pip install "respan-frameworks[otlp]"`).

The endpoint comes from the `otlp_endpoint` setting, else from the standard
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` variables; headers and
timeouts from the other `OTEL_EXPORTER_OTLP_*` variables, as the exporter reads them. Spans
leave with Respan's attribute keys, exactly as they would reach Respan's own endpoint, so a
Collector can forward them to Respan unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .wire import to_respan_attributes

TRACES_PATH = "/v1/traces"


def endpoint_from_environment() -> str | None:
    """Whether the standard variables name an endpoint (the exporter reads them itself)."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def otlp_exporter(endpoint: str | None, trace_content: bool) -> SpanExporter:
    """OpenTelemetry's OTLP/HTTP exporter for `endpoint` (a base URL or the traces URL)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        raise ImportError(
            "Exporting to an OTLP endpoint needs OpenTelemetry's OTLP exporter: "
            'pip install "respan-frameworks[otlp]"'
        ) from error
    if endpoint is None:
        # The exporter reads the standard variables itself, as the specification says: the
        # traces-specific one exactly as given, the general one with /v1/traces appended.
        exporter = OTLPSpanExporter()
    else:
        if not endpoint.rstrip("/").endswith(TRACES_PATH):
            endpoint = endpoint.rstrip("/") + TRACES_PATH
        exporter = OTLPSpanExporter(endpoint=endpoint)
    return WithRespanAttributes(exporter, trace_content)


class WithRespanAttributes(SpanExporter):
    """Hands another exporter the spans with their attributes in Respan's keys."""

    def __init__(self, exporter: SpanExporter, trace_content: bool):
        self.exporter = exporter
        self._trace_content = trace_content

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([self._translated(span) for span in spans])

    def _translated(self, span: ReadableSpan) -> ReadableSpan:
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=to_respan_attributes(span.attributes or {}, self._trace_content),
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
