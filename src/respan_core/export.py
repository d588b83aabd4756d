"""Export to Respan: OTLP/JSON over HTTP, with OpenInference attributes in Respan's keys.

A batch that fails for a reason that may pass (no connection, a timeout, a 5xx, a 429) is
retried with exponential backoff and jitter, honouring `Retry-After`, for up to two minutes;
one Respan refuses (another 4xx) is not retried. Warnings say what the user must act on, at
most once a minute, and never include a payload or a key.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _string  # a JSON string, quotes included
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .wire import to_respan_attributes

logger = logging.getLogger("respan_core")

RETRY_FOR = 120.0  # seconds one batch is retried before it is dropped
MAX_BACKOFF = 10.0
WARNING_INTERVAL = 60.0


def encode(spans: Sequence[ReadableSpan], trace_content: bool = True) -> bytes:
    """The OTLP/JSON body of an export request for these spans, attributes in Respan's keys.

    Written as OpenTelemetry's own exporter writes OTLP/JSON (hex ids, nanosecond times and
    64-bit integers as decimal strings), straight to JSON text: the exporter's thread shares
    the interpreter with the application, so every microsecond a span costs here counts.
    """
    grouped: dict[int, tuple[Resource, dict[tuple, list[str]]]] = {}
    for span in spans:
        resource = span.resource
        scopes = grouped.setdefault(id(resource), (resource, {}))[1]
        scope = span.instrumentation_scope
        key = (scope.name, scope.version) if scope else ("", None)
        scopes.setdefault(key, []).append(_span(span, trace_content))
    resource_spans = []
    for resource, scopes in grouped.values():
        scope_spans = ",".join(
            f'{{"scope":{_scope(name, version)},"spans":[{",".join(encoded)}]}}'
            for (name, version), encoded in scopes.items()
        )
        resource_spans.append(
            f'{{"resource":{{"attributes":{_key_values(resource.attributes)}}},'
            f'"scopeSpans":[{scope_spans}]}}'
        )
    return f'{{"resourceSpans":[{",".join(resource_spans)}]}}'.encode()


def _scope(name: str, version: str | None) -> str:
    if version:
        return f'{{"name":{_string(name)},"version":{_string(version)}}}'
    return f'{{"name":{_string(name)}}}'


def _span(span: ReadableSpan, trace_content: bool) -> str:
    context, status = span.context, span.status
    attributes = to_respan_attributes(span.attributes or {}, trace_content)
    parts = [
        f'{{"traceId":"{context.trace_id:032x}","spanId":"{context.span_id:016x}",'
        f'"name":{_string(span.name)},'
        f'"kind":{span.kind.value + 1},'  # OTLP counts from SPAN_KIND_UNSPECIFIED = 0
        f'"startTimeUnixNano":"{span.start_time}","endTimeUnixNano":"{span.end_time}",'
        f'"attributes":{_key_values(attributes)}'
    ]
    if span.parent is not None:
        parts.append(f',"parentSpanId":"{span.parent.span_id:016x}"')
    if context.trace_state:
        parts.append(f',"traceState":{_string(context.trace_state.to_header())}')
    for field, count in (
        ("droppedAttributesCount", span.dropped_attributes),
        ("droppedEventsCount", span.dropped_events),
        ("droppedLinksCount", span.dropped_links),
    ):
        if count:
            parts.append(f',"{field}":{count}')
    if status.description:
        parts.append(
            f',"status":{{"code":{status.status_code.value},'
            f'"message":{_string(status.description)}}}'
        )
    else:
        parts.append(f',"status":{{"code":{status.status_code.value}}}')
    if span.events:
        events = ",".join(
            f'{{"timeUnixNano":"{event.timestamp}","name":{_string(event.name)},'
            f'"attributes":{_key_values(event.attributes or {})}}}'
            for event in span.events
        )
        parts.append(f',"events":[{events}]')
    if span.links:
        links = ",".join(
            f'{{"traceId":"{link.context.trace_id:032x}","spanId":"{link.context.span_id:016x}",'
            f'"attributes":{_key_values(link.attributes or {})}}}'
            for link in span.links
        )
        parts.append(f',"links":[{links}]')
    parts.append("}")
    return "".join(parts)


def _key_values(attributes: Mapping[str, Any]) -> str:
    pairs = []
    for key, value in attributes.items():
        if type(key) is not str or value is None:
            continue  # no exporter would take it: left out rather than failing the batch
        if type(value) is str:  # most values: written here, without a call to _value
            pairs.append(f'{{"key":{_string(key)},"value":{{"stringValue":{_string(value)}}}}}')
        else:
            pairs.append(f'{{"key":{_string(key)},"value":{_value(value)}}}')
    return f"[{','.join(pairs)}]"


def _value(value: Any) -> str:
    """One OTLP AnyValue. Subclasses (a numpy float, an enum) are written as their base type:
    their own repr is not JSON."""
    if isinstance(value, str):
        return f'{{"stringValue":{_string(str.__str__(value))}}}'
    if isinstance(value, bool):
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return f'{{"intValue":"{int.__repr__(value)}"}}'
        return f'{{"stringValue":"{int.__repr__(value)}"}}'  # out of OTLP's 64-bit range
    if isinstance(value, float):
        if math.isfinite(value):
            return f'{{"doubleValue":{float.__repr__(value)}}}'
        return f'{{"doubleValue":"{_NON_FINITE[float.__repr__(value)]}"}}'  # OTLP/JSON's words
    if isinstance(value, bytes):
        return f'{{"bytesValue":"{base64.b64encode(value).decode()}"}}'
    if isinstance(value, Mapping):
        return f'{{"kvlistValue":{{"values":{_key_values(value)}}}}}'
    if isinstance(value, list | tuple):
        items = ",".join("{}" if item is None else _value(item) for item in value)
        return f'{{"arrayValue":{{"values":[{items}]}}}}'
    return f'{{"stringValue":{_string(str(value))}}}'


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class RespanExporter(SpanExporter):
    """POSTs batches of spans to Respan's `/v2/traces` endpoint with the API key."""

    def __init__(
        self, endpoint: str, api_key: str, trace_content: bool = True, timeout: float = 10.0
    ):
        self.endpoint = endpoint
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {api_key}",
        }
        self._trace_content = trace_content
        self._timeout = timeout
        self._deadline: float | None = None
        self._hurry = threading.Event()
        self._refusals_warned: set[int] = set()
        self._dropped_unreported = 0
        self._last_drop_warning = 0.0

    def stop_at(self, deadline: float) -> None:
        """Make no request and no retry past `deadline` (a time.monotonic() value)."""
        self._deadline = deadline
        self._hurry.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode(spans, self._trace_content)
        give_up_at = time.monotonic() + RETRY_FOR
        attempt = 0
        while True:
            if self._deadline is not None:
                give_up_at = min(give_up_at, self._deadline)
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                break
            status, retry_after = self._post(body, min(self._timeout, remaining))
            if status is not None and status < 300:
                return SpanExportResult.SUCCESS
            if status is not None and 400 <= status < 500 and status != 429:
                self._warn_refused(status, len(spans))
                return SpanExportResult.FAILURE
            if self._hurry.is_set():
                break  # shutting down: one attempt per batch, no waiting
            backoff = min(MAX_BACKOFF, 0.5 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.5)
            attempt += 1
            self._hurry.wait(retry_after if retry_after is not None else backoff)
        self._warn_dropped(len(spans))
        return SpanExportResult.FAILURE

    def post_once(self, spans: Sequence[ReadableSpan]) -> int | None:
        """POST the spans once, without retrying; the answer's status, None for no answer."""
        return self._post(encode(spans, self._trace_content), self._timeout)[0]

    def _post(self, body: bytes, timeout: float) -> tuple[int | None, float | None]:
        """The answer's status and Retry-After seconds; no status when there was no answer."""
        request = urllib.request.Request(
            self.endpoint, data=body, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return response.status, None
        except urllib.error.HTTPError as error:
            return error.code, _retry_after(error.headers.get("Retry-After"))
        except (OSError, ValueError) as error:
            logger.debug("Respan could not be reached at %s: %s", self.endpoint, error)
            return None, None

    def _warn_refused(self, status: int, count: int) -> None:
        if status in self._refusals_warned:
            return
        self._refusals_warned.add(status)
        if status in (401, 403):
            logger.warning(
                "Respan rejected the API key (HTTP %d) and dropped %d spans: check "
                "RESPAN_API_KEY (or the API_KEY setting).",
                status,
                count,
            )
        else:
            logger.warning("Respan refused %d spans with HTTP %d; not retrying.", count, status)

    def _warn_dropped(self, count: int) -> None:
        self._dropped_unreported += count
        now = time.monotonic()
        if now - self._last_drop_warning >= WARNING_INTERVAL:
            logger.warning(
                "Respan could not be reached at %s: dropped %d spans since the last warning.",
                self.endpoint,
                self._dropped_unreported,
            )
            self._dropped_unreported = 0
            self._last_drop_warning = now


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None
