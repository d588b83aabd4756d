"""Workflow and task spans: the structure Respan draws a trace with.

An `Entity` is one workflow or task span plus the context its children run in. The decorators,
the web adapters' request spans and the Celery task spans are all entities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Status, StatusCode

from . import client, wire
from .scope import Position, current_position, position

WORKFLOW = "workflow"
TASK = "task"


class Entity:
    """A started workflow or task span.

    `activated()` makes it the current span (and its position the current position) for the
    code that runs inside it; `end()` ends it, once, however often it is called.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        span_name: str | None = None,
        parent: Context | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] = (),
        tracer: trace.Tracer | None = None,
    ):
        outer = current_position()
        if kind == WORKFLOW:
            path = ""
            self.position = Position(workflow_name=name)
        else:
            path = f"{outer.entity_path}.{name}" if outer and outer.entity_path else name
            self.position = Position(outer.workflow_name if outer else None, path)

        entity_attributes = {wire.SPAN_KIND: kind, wire.ENTITY_NAME: name, wire.ENTITY_PATH: path}
        if self.position.workflow_name:
            entity_attributes[wire.WORKFLOW_NAME] = self.position.workflow_name
        entity_attributes.update(attributes or {})

        self.kind = kind
        tracer = tracer or client.get_tracer()
        self.span = tracer.start_span(
            span_name or f"{name}.{kind}",
            context=parent,
            attributes=entity_attributes,
            links=links,
        )
        self.context = trace.set_span_in_context(self.span, parent)
        self._ended = False
        self._failed_by: BaseException | None = None

    def rename(self, name: str) -> None:
        """Rename a workflow once its final name is known (a web route, say)."""
        self.span.update_name(name)
        self.span.set_attribute(wire.ENTITY_NAME, name)
        if self.kind == WORKFLOW:
            self.position.workflow_name = name
            self.span.set_attribute(wire.WORKFLOW_NAME, name)

    @contextlib.contextmanager
    def activated(self) -> Iterator[trace.Span]:
        token = otel_context.attach(self.context)
        try:
            with position(self.position):
                yield self.span
        finally:
            otel_context.detach(token)

    def fail(self, exception: BaseException) -> None:
        """Mark the span as failed by `exception`; a second call for the same one is ignored."""
        if exception is self._failed_by:
            return
        self._failed_by = exception
        self.span.record_exception(exception)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.span.end()
