"""The span of a workflow or task: an OpenTelemetry span without the SDK's per-span machinery.

Every request and every Celery task opens one, so its cost is the package's cost. The SDK's
span runs a sampler and keeps its attributes, events and links in bounded containers that
check every value as it goes in (about 9 us a span); this one takes its ids from the client's
provider, checks only what is handed to it from outside the package (with the SDK's default
limits), and gives the provider's span processors the same calls the SDK would (about 2 us).
To exporters it is an ordinary finished `ReadableSpan`.
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
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

logger = logging.getLogger("respan_core")

MAX_PER_SPAN = 128  # attributes, events, links: the SDK's default limits, so that a loop
# setting attributes or adding events cannot grow a span without end
_PRIMITIVES = (str, bool, int, float)
_UNSET = Status(StatusCode.UNSET)
_SCOPE = InstrumentationScope("respan_core")
# W3C trace context level 2's flag for a random trace id, where this API version knows it.
_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM_ID = TraceFlags(TraceFlags.SAMPLED | _RANDOM_TRACE_ID)


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
        # A SpanContext is the tuple its type declares: read without a property call each.
        trace_id, _, _, parent_flags, state, parent_is_valid = parent
        if parent_is_valid:
            parent_span: SpanContext | None = parent
            random_id = parent_flags & _RANDOM_TRACE_ID
        else:
            trace_id, state, parent_span = ids.generate_trace_id(), DEFAULT_TRACE_STATE, None
            random_id = getattr(ids, "is_trace_id_random", bool)()
        super().__init__(
            name,
            span_context(
                trace_id, ids.generate_span_id(), False,
                _SAMPLED_RANDOM_ID if random_id else _SAMPLED, state,
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
        self._lock = threading.Lock()
        self._dropped_attributes = self._dropped_events = self._dropped_links = 0
        # The provider's own processor, which hands spans to processors added to it later too.
        self._processor = provider._active_span_processor
        self._processor.on_start(self, context)

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        with self._lock:  # a span another thread ends meanwhile is final when it ends
            if self._end_time is None:
                self._dropped_attributes += _add_valid(self._attributes, attributes)

    def update_name(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Rename the span; `attributes`, the package's own (valid as they are), come with
        the new name."""
        with self._lock:
            if self._end_time is None:
                self._name = name
                if attributes:
                    self._attributes.update(attributes)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if not isinstance(status, Status) or status.status_code is StatusCode.UNSET:
            return
        with self._lock:
            if self._end_time is None and self._status.status_code is not StatusCode.OK:
                self._status = status

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        valid: dict[str, Any] = {}
        if attributes:
            _add_valid(valid, attributes)
        event = Event(name, valid, timestamp or time_ns())
        with self._lock:
            if self._end_time is None:
                if len(self._events) < MAX_PER_SPAN:
                    self._events = (*self._events, event)
                else:
                    self._dropped_events += 1

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if not context.is_valid:
            return
        valid: dict[str, Any] = {}
        if attributes:
            _add_valid(valid, attributes)
        with self._lock:
            if self._end_time is None:
                if len(self._links) < MAX_PER_SPAN:
                    self._links = (*self._links, Link(context, valid))
                else:
                    self._dropped_links += 1

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

    def __exit__(self, kind: Any, exception: BaseException | None, exc_tb: Any) -> None:
        """`with span:` ends it, recording an exception that leaves the block, as the SDK's."""
        if exception is not None and self.is_recording():
            self.record_exception(exception, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {exception}"))
        self.end()

    def end(self, end_time: int | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        """End the span and hand it to the processors; later calls do nothing. `attributes`,
        the package's own (valid as they are), are added as it ends."""
        with self._lock:
            if self._end_time is not None:
                return
            if attributes:
                self._attributes.update(attributes)
            self._end_time = end_time or time_ns()
        self._processor.on_end(self)


def span_context(
    trace_id: int, span_id: int, is_remote: bool, flags: TraceFlags, state: TraceState
) -> SpanContext:
    """A SpanContext of ids known to fit (an id generator's, or a header's checked ones),
    made as the tuple its type declares: its constructor's range checks cost as much again."""
    return tuple.__new__(
        SpanContext, (trace_id, span_id, is_remote, flags, state, bool(trace_id and span_id))
    )


def _add_valid(attributes: dict[str, Any], new: Mapping[str, Any]) -> int:
    """Add the valid ones of `new` to `attributes`; the number left out for the limit."""
    dropped = 0
    for key, value in new.items():
        if not isinstance(value, _PRIMITIVES):
            value = _valid_sequence(key, value)
            if value is None:
                continue
        if type(key) is not str:
            logger.debug("left out a span attribute whose key %r is not a string", key)
            continue
        if len(attributes) >= MAX_PER_SPAN and key not in attributes:
            dropped += 1
            continue
        attributes[key] = value
    return dropped


def _valid_sequence(key: str, value: Any) -> tuple | None:
    """A sequence of one primitive type as a tuple, else None (left out, with a debug log,
    where the SDK would warn)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        kinds = {type(item) for item in value if item is not None}
        if len(kinds) <= 1 and kinds <= set(_PRIMITIVES):
            return tuple(value)
    logger.debug("left out span attribute %r: %r is not a valid attribute value", key, value)
    return None
