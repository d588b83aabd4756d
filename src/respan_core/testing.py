"""A pytest plugin for applications that use this package: the spans your own tests make.

Installed with the package, it gives every test the `respan_spans` fixture, which captures in
memory every span finished during the test, by the Django test client, the Flask test client,
eager Celery tasks or anything else:

    def test_chat_is_traced_for_the_user(client, respan_spans, django_user_model):
        user = django_user_model.objects.create_user("ada")
        client.force_login(user)

        client.post("/chat/1/", {"message": "hello"}, content_type="application/json")

        request = respan_spans.workflow("POST /chat/<int:conversation_id>/")
        respan_spans.assert_identity(request, customer=str(user.pk))
        assert [s.name for s in respan_spans.under(request)] == ["completion"]
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import wire
from .client import tap


class CapturedSpans:
    """The spans finished while a test ran, and helpers to find and check them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def workflow(self, name: str) -> ReadableSpan:
        """The one workflow with this name: a request's is `METHOD /route`, a decorated
        function's the name given to `@workflow`."""
        found = [s for s in self.spans if s.attributes.get(wire.SPAN_KIND) == "workflow"
                 and name in (s.name, s.attributes.get(wire.ENTITY_NAME))]
        if len(found) != 1:
            workflows = [s.name for s in self.spans if s.attributes.get(wire.SPAN_KIND)
                         == "workflow"]
            raise AssertionError(f"expected one workflow {name!r}, found {len(found)} "
                                 f"among {workflows}")
        return found[0]

    def in_trace(self, span: ReadableSpan) -> list[ReadableSpan]:
        """Every captured span of `span`'s trace, itself included."""
        return [s for s in self.spans if s.context.trace_id == span.context.trace_id]

    def under(self, span: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is `span`."""
        return [s for s in self.spans if s.parent and s.parent.span_id == span.context.span_id]

    def assert_identity(
        self, span: ReadableSpan, customer: str | None = None, thread: str | None = None
    ) -> None:
        """Check that every span of `span`'s trace carries this customer (and thread)."""
        for one in self.in_trace(span):
            if customer is not None:
                assert one.attributes.get(wire.CUSTOMER_IDENTIFIER) == customer, one.name
            if thread is not None:
                assert one.attributes.get(wire.THREAD_IDENTIFIER) == thread, one.name


@pytest.fixture
def respan_spans() -> Iterator[CapturedSpans]:
    """Every span finished during the test, captured in memory (see `CapturedSpans`)."""
    captured = CapturedSpans()
    with tap(captured.exporter):
        yield captured
