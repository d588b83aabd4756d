"""The span of a workflow or task: an OpenTelemetry span without the SDK's per-span machinery.

Every request and every Celery task opens one, so its cost is the package's cost. The SDK's
span runs a sampler, locks each attribute write and checks each value as it goes in (about
9 us a span); this one takes its ids from the client's provider, checks only values handed to
it from outside the package, and gives the client's span processors the same calls the SDK
would (about 2 us). To exporters it is an ordinary finished `ReadableSpan`.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

logger = logging.getLogger("respan_core")

MAX_EVENTS = 128  # as the SDK's default limit: a loop adding events cannot grow a span forever
_PRIMITIVES = (str, bool, int, float)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_SCOPE = InstrumentationScope("respan_core")
_ending = threading.Lock()


class EntitySpan(trace.Span, ReadableSpan):
    """A started span on `provider`, the child of `parent` (a span's context, valid or not),
    started in `context`; always sampled, like every span of a client. It keeps `attributes`
    (a dict of valid values) as its own."""

    def __init__(
        self,
        provider: TracerProvider,
        name: str,
        parent: SpanContext,
        context: Context | None,
        attributes: Mapping[str, Any],
        links: Sequence[Link] = (),
        start_time: int | None = None,
    ):
        ids = provider.id_generator
        parent_span: SpanContext | None = parent
        if parent.is_valid:
            trace_id, state = parent.trace_id, parent.trace_state
            flags = parent.trace_flags
            if not flags.sampled:
                flags = TraceFlags(flags | TraceFlags.SAMPLED)
        else:
            trace_id, flags, state, parent_span = ids.generate_trace_id(), _SAMPLED, None, None
        super().__init__(
            name,
            SpanContext(
                trace_id, ids.generate_span_id(), is_remote=False, trace_flags=flags,
                trace_state=state,
            ),
            parent_span,
            provider.resource,
            attributes,
            (),  # events and links: none until added, and then a new tuple (they are few)
            tuple(links),
            SpanKind.INTERNAL,
            None,
            _UNSET,
            start_time or time_ns(),
            None,
            _SCOPE,
        )
        # The provider's own processor list: processors added to it later see these spans too.
        self._processor = provider._active_span_processor
        self._processor.on_start(self, parent_context=context)

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is not None:
            return
        for key, value in attributes.items():
            if not isinstance(value, _PRIMITIVES):
                value = _valid_sequence(key, value)
                if value is None:
                    continue
            self._attributes[key] = value

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is None and len(self._events) < MAX_EVENTS:
            event = Event(name, dict(attributes or {}), timestamp or time_ns())
            self._events = (*self._events, event)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, dict(attributes or {})))

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        event = {
            "exception.type": (
                f"{module}.{kind.__qualname__}" if module and module != "builtins"
                else kind.__qualname__
            ),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span and hand it to the processors; later calls do nothing."""
        with _ending:
            if self._end_time is not None:
                return
            self._end_time = end_time or time_ns()
        self._processor.on_end(self)


def _valid_sequence(key: str, value: Any) -> tuple | None:
    """A list or tuple of one primitive type as a tuple, else None (left out, with a debug
    log, where the SDK would warn)."""
    if isinstance(value, list | tuple):
        kinds = {type(item) for item in value if item is not None}
        if len(kinds) <= 1 and kinds <= set(_PRIMITIVES):
            return tuple(value)
    logger.debug("left out span attribute %r: %r is not a valid attribute value", key, value)
    return None
