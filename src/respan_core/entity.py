"""Workflow and task spans: the structure Respan draws a trace with.

An `Entity` is one workflow or task span plus the context its children run in. The decorators,
the web adapters' request spans and the Celery task spans are all entities.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN_CONTEXT, Link, SpanContext, Status, StatusCode

from . import client, wire
from .scope import Current, Position, current_var, merge_scopes
from .span import EntitySpan

WORKFLOW = "workflow"
TASK = "task"

# The key OpenTelemetry keeps the current span under in a context, found through its public
# API: an entity reads its parent and builds its own context with plain dictionary steps.
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
_EMPTY_CONTEXT = Context()  # a context cannot be changed, only copied: one serves all


class Entity:
    """A started workflow or task span.

    Its span goes to `respan`, else to the active client. `parent` is the context to start
    in (the current one by default), or a remote parent span's context (a task's sender); a
    task's path continues `outer` (the current position by default). `activated()` makes it
    the current span (its position the current position, its client the active one) for the
    code that runs inside it; `end()` ends it, once, however often it is called.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        span_name: str | None = None,
        parent: Context | SpanContext | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] = (),
        start_time: int | None = None,
        respan: client.Respan | None = None,
        outer: Position | None = None,
    ):
        if kind == WORKFLOW:
            path = ""
            self.position = Position(name)
        else:
            outer = outer or current_var.get().position
            path = f"{outer.entity_path}.{name}" if outer and outer.entity_path else name
            self.position = Position(outer.workflow_name if outer else None, path)

        entity_attributes = {wire.SPAN_KIND: kind, wire.ENTITY_NAME: name, wire.ENTITY_PATH: path}
        if self.position.workflow_name:
            entity_attributes[wire.WORKFLOW_NAME] = self.position.workflow_name
        entity_attributes.update(attributes or {})

        self.kind = kind
        self.client = respan or client.active()
        span_name = span_name or f"{name}.{kind}"
        if isinstance(parent, SpanContext):  # a remote parent: nothing else is inherited
            parent_span, base = parent, _EMPTY_CONTEXT
        else:
            base = otel_context.get_current() if parent is None else parent
            parent_span = span_context_in(base)
        self.span: trace.Span
        if self.client is not None:
            self.span = EntitySpan(
                self.client.tracer_provider, span_name, parent_span, base, entity_attributes,
                links, start_time,
            )
        else:  # no client yet: whatever tracer the application set up, if any
            self.span = trace.get_tracer("respan_core").start_span(
                span_name, trace.set_span_in_context(trace.NonRecordingSpan(parent_span), base),
                attributes=entity_attributes, links=links, start_time=start_time,
            )
        self.context = Context({**base, _SPAN_KEY: self.span})
        self._ended = False
        self._failed_by: BaseException | None = None

    def rename(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Rename a workflow once its final name is known (a web route, say), adding
        `attributes` that came with the name."""
        renamed = {wire.ENTITY_NAME: name, **(attributes or {})}
        if self.kind == WORKFLOW:
            self.position.workflow_name = name
            renamed[wire.WORKFLOW_NAME] = name
        if isinstance(self.span, EntitySpan):
            self.span.update_name(name, renamed)
        else:
            self.span.update_name(name)
            self.span.set_attributes(renamed)

    def activated(self, scope: Mapping[str, Any] | None = None) -> _Activation:
        """A context manager in which this entity is current, with `scope` (fields of
        `propagate_attributes`, lazy values too) merged into the current scope if given."""
        return _Activation(self, scope)

    def new_context(self) -> contextvars.Context:
        """A copy of the current context with this entity active in it for good.

        Code that runs in steps (a generator) runs each step in this context, so what it
        sets (a scope it opens) stays its own and what it started in stays with it.
        """
        context = contextvars.copy_context()
        context.run(self.activate_for_good)
        return context

    def activate_for_good(self) -> None:
        """Make this entity current in the running context, with no block to leave it.

        For a framework hook that starts the entity before the code meant to run in it: wrap
        the whole of that in `restoring_current()`, which undoes this when it is left.
        """
        otel_context.attach(self.context)
        current_var.set(Current(self.client, self.position, current_var.get().scope))

    def fail(self, exception: BaseException) -> None:
        """Mark the span as failed by `exception`; a second call for the same one is ignored."""
        if exception is self._failed_by:
            return
        self._failed_by = exception
        self.span.record_exception(exception)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))

    def is_current(self) -> bool:
        """Whether this entity's span is the current span."""
        return otel_context.get_current().get(_SPAN_KEY) is self.span

    @property
    def failed(self) -> bool:
        return self._failed_by is not None

    def end(self, attributes: Mapping[str, Any] | None = None) -> None:
        """End the span, adding `attributes` (valid ones) as it ends."""
        if not self._ended:
            self._ended = True
            if isinstance(self.span, EntitySpan):
                self.span.end(attributes=attributes)
            else:
                if attributes:
                    self.span.set_attributes(attributes)
                self.span.end()


def span_context_in(context: Context) -> SpanContext:
    """The context of the span current in `context`; an invalid one if there is none."""
    span = context.get(_SPAN_KEY)
    return INVALID_SPAN_CONTEXT if span is None else span.get_span_context()


@contextlib.contextmanager
def restoring_current() -> Iterator[None]:
    """On leaving, make current again the span, client and position current on entering.

    Undoes the `Entity.activate_for_good()` calls made inside, and any OpenTelemetry context
    another library's hook attached inside and left attached.
    """
    token = otel_context.attach(otel_context.get_current())
    current_token = current_var.set(current_var.get())
    try:
        yield
    finally:
        current_var.reset(current_token)
        otel_context.detach(token)


class _Activation:
    """`Entity.activated()`: a class rather than a generator, as it runs twice per request
    and per task."""

    __slots__ = ("entity", "scope", "tokens")

    def __init__(self, entity: Entity, scope: Mapping[str, Any] | None):
        self.entity = entity
        self.scope = scope

    def __enter__(self) -> trace.Span:
        entity = self.entity
        scope = current_var.get().scope
        if self.scope:
            scope = merge_scopes(scope, self.scope)
        self.tokens = (
            otel_context.attach(entity.context),
            current_var.set(Current(entity.client, entity.position, scope)),
        )
        return entity.span

    def __exit__(self, *_: object) -> None:
        context_token, current_token = self.tokens
        current_var.reset(current_token)
        otel_context.detach(context_token)
