"""Export to Respan: OTLP/JSON over HTTP, with OpenInference attributes in Respan's keys."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Sequence

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .wire import to_respan_attributes

logger = logging.getLogger("respan_core")


def translated(span: ReadableSpan, trace_content: bool = True) -> ReadableSpan:
    """A copy of a finished span with its attributes ready for export (`to_respan_attributes`)."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=to_respan_attributes(span.attributes or {}, trace_content),
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def encode(spans: Sequence[ReadableSpan], trace_content: bool = True) -> bytes:
    """The OTLP/JSON body of an export request for these spans."""
    return encode_spans([translated(span, trace_content) for span in spans]).to_json().encode()


class RespanExporter(SpanExporter):
    """POSTs batches of spans to Respan's `/v2/traces` endpoint with the API key."""

    def __init__(
        self, endpoint: str, api_key: str, trace_content: bool = True, timeout: float = 10.0
    ):
        self._endpoint = endpoint
        self._trace_content = trace_content
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {api_key}",
        }
        self._timeout = timeout

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode(spans, self._trace_content)
        request = urllib.request.Request(
            self._endpoint, data=body, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
            return SpanExportResult.SUCCESS
        except urllib.error.HTTPError as error:
            logger.warning("Respan rejected %d spans: HTTP %s", len(spans), error.code)
        except OSError as error:
            logger.warning("Respan could not be reached at %s: %s", self._endpoint, error)
        return SpanExportResult.FAILURE
