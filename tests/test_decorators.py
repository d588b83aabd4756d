"""`@workflow` and `@task`: one span per call of a function, coroutine or generator."""

import asyncio
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from respan_core import Respan, propagate_attributes, task, wire, workflow
from respan_core.scope import current_position


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def respan(exporter):
    client = Respan(exporter=exporter, trace_content=True)
    yield client
    client.shutdown()


@pytest.fixture
def finished(respan, exporter):
    """The finished spans by name, after a flush."""

    def spans():
        respan.flush()
        return {span.name: span for span in exporter.get_finished_spans()}

    return spans


def _parent_id(span):
    return span.parent.span_id if span.parent else None


# Spans and their attributes


def test_workflow_records_a_workflow_span_with_entity_attributes(finished):
    @workflow(name="content_pipeline")
    def pipeline():
        return "done"

    pipeline()

    span = finished()["content_pipeline.workflow"]
    assert span.attributes[wire.SPAN_KIND] == "workflow"
    assert span.attributes[wire.ENTITY_NAME] == "content_pipeline"
    assert span.attributes[wire.ENTITY_PATH] == ""
    assert span.attributes[wire.WORKFLOW_NAME] == "content_pipeline"
    assert span.parent is None


def test_task_under_a_workflow_is_its_child_with_its_own_name_as_path(finished):
    @task(name="generate_outline")
    def outline():
        return "outline"

    @workflow(name="content_pipeline")
    def pipeline():
        return outline()

    pipeline()

    spans = finished()
    outer, inner = spans["content_pipeline.workflow"], spans["generate_outline.task"]
    assert _parent_id(inner) == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id
    assert inner.attributes[wire.SPAN_KIND] == "task"
    assert inner.attributes[wire.ENTITY_NAME] == "generate_outline"
    assert inner.attributes[wire.ENTITY_PATH] == "generate_outline"
    assert inner.attributes[wire.WORKFLOW_NAME] == "content_pipeline"


def test_nested_tasks_join_their_names_with_a_dot_in_the_path(finished):
    @task(name="b")
    def inner():
        return 1

    @task(name="a")
    def outer():
        return inner()

    @workflow(name="w")
    def run():
        return outer()

    run()

    spans = finished()
    assert spans["a.task"].attributes[wire.ENTITY_PATH] == "a"
    assert spans["b.task"].attributes[wire.ENTITY_PATH] == "a.b"
    assert spans["b.task"].attributes[wire.WORKFLOW_NAME] == "w"
    assert _parent_id(spans["b.task"]) == spans["a.task"].context.span_id


def test_a_name_left_out_defaults_to_the_function_name(finished):
    @workflow()
    def summarize():
        return None

    summarize()

    assert finished()["summarize.workflow"].attributes[wire.ENTITY_NAME] == "summarize"


def test_bare_workflow_without_parentheses_traces_the_function(finished):
    @workflow
    def ingest_documents(count):
        return count * 2

    assert ingest_documents(21) == 42

    span = finished()["ingest_documents.workflow"]
    assert span.attributes[wire.SPAN_KIND] == "workflow"
    assert span.attributes[wire.ENTITY_NAME] == "ingest_documents"


def test_bare_task_without_parentheses_traces_the_function(finished):
    @task
    def tokenize(text):
        return text.split()

    @workflow
    def run():
        return tokenize("a b")

    assert run() == ["a", "b"]

    assert finished()["tokenize.task"].attributes[wire.ENTITY_PATH] == "tokenize"


def test_the_decorated_function_keeps_its_name_and_docstring():
    @workflow(name="other")
    def answer():
        """Answer the question."""

    assert answer.__name__ == "answer"
    assert answer.__doc__ == "Answer the question."


def test_the_span_is_current_while_the_function_runs(finished):
    seen = {}

    @workflow(name="w")
    def run():
        seen["span"] = trace.get_current_span()

    run()

    assert seen["span"].get_span_context().span_id == finished()["w.workflow"].context.span_id
    assert not trace.get_current_span().get_span_context().is_valid


# Content capture


def test_input_and_output_are_recorded_as_json_while_content_capture_is_on(finished):
    @task(name="outline")
    def outline(topic, depth=1):
        return {"topic": topic, "sections": ["intro"] * depth}

    outline("gateways", depth=2)

    span = finished()["outline.task"]
    assert json.loads(span.attributes[wire.ENTITY_INPUT]) == {
        "args": ["gateways"],
        "kwargs": {"depth": 2},
    }
    assert json.loads(span.attributes[wire.ENTITY_OUTPUT]) == {
        "topic": "gateways",
        "sections": ["intro", "intro"],
    }


def test_input_and_output_are_absent_with_trace_content_false():
    exporter = InMemorySpanExporter()
    client = Respan(exporter=exporter, trace_content=False)

    @workflow(name="private")
    def private(secret):
        return secret.upper()

    try:
        assert private("hunter2") == "HUNTER2"
        client.flush()
        (span,) = exporter.get_finished_spans()
    finally:
        client.shutdown()

    assert wire.ENTITY_INPUT not in span.attributes
    assert wire.ENTITY_OUTPUT not in span.attributes
    assert span.attributes[wire.ENTITY_NAME] == "private"


def test_respan_trace_content_false_in_the_environment_turns_capture_off(monkeypatch):
    monkeypatch.setenv("RESPAN_TRACE_CONTENT", "false")
    exporter = InMemorySpanExporter()
    client = Respan(exporter=exporter)

    @workflow(name="private")
    def private(secret):
        return secret

    try:
        private("hunter2")
        client.flush()
        (span,) = exporter.get_finished_spans()
    finally:
        client.shutdown()

    assert wire.ENTITY_INPUT not in span.attributes
    assert wire.ENTITY_OUTPUT not in span.attributes


# Exceptions


def test_an_exception_is_recorded_on_the_span_and_reraised_unchanged(finished):
    error = ValueError("boom")

    @workflow(name="w")
    def fail():
        raise error

    with pytest.raises(ValueError) as raised:
        fail()

    assert raised.value is error
    span = finished()["w.workflow"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"


def test_a_failed_task_does_not_mark_the_workflow_that_handles_the_error(finished):
    @task(name="t")
    def fail():
        raise KeyError("missing")

    @workflow(name="w")
    def run():
        try:
            fail()
        except KeyError:
            return "recovered"

    assert run() == "recovered"

    spans = finished()
    assert spans["t.task"].status.status_code is StatusCode.ERROR
    assert spans["w.workflow"].status.status_code is StatusCode.UNSET
    assert spans["w.workflow"].events == ()


# Coroutines


def test_a_coroutine_gets_a_span_that_lasts_across_its_awaits(finished):
    seen = {}

    @task(name="fetch")
    async def fetch():
        await asyncio.sleep(0)
        return "page"

    @workflow(name="crawl")
    async def crawl():
        page = await fetch()
        await asyncio.sleep(0)
        seen["span"] = trace.get_current_span()
        return page

    assert asyncio.run(crawl()) == "page"

    spans = finished()
    outer = spans["crawl.workflow"]
    assert seen["span"].get_span_context().span_id == outer.context.span_id
    assert _parent_id(spans["fetch.task"]) == outer.context.span_id
    assert spans["fetch.task"].attributes[wire.ENTITY_PATH] == "fetch"
    assert json.loads(outer.attributes[wire.ENTITY_OUTPUT]) == "page"


def test_concurrent_coroutines_each_nest_under_their_own_workflow(respan, exporter):
    @task(name="step")
    async def step(label):
        await asyncio.sleep(0.01)
        return label

    @workflow
    async def first():
        return await step("first")

    @workflow
    async def second():
        return await step("second")

    async def main():
        return await asyncio.gather(first(), second())

    assert asyncio.run(main()) == ["first", "second"]

    respan.flush()
    spans = exporter.get_finished_spans()
    workflows = {s.name: s.context.span_id for s in spans if s.name.endswith(".workflow")}
    steps = [s for s in spans if s.name == "step.task"]
    assert len(steps) == 2
    for step_span in steps:
        label = json.loads(step_span.attributes[wire.ENTITY_OUTPUT])
        assert _parent_id(step_span) == workflows[f"{label}.workflow"]
        assert step_span.attributes[wire.WORKFLOW_NAME] == label


def test_an_exception_in_a_coroutine_is_recorded_and_reraised_unchanged(finished):
    error = RuntimeError("provider down")

    @task(name="call")
    async def call():
        await asyncio.sleep(0)
        raise error

    with pytest.raises(RuntimeError) as raised:
        asyncio.run(call())

    assert raised.value is error
    span = finished()["call.task"]
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


# Generators


def test_a_generator_span_lasts_until_the_generator_is_exhausted(finished):
    @workflow(name="stream")
    def stream():
        yield "a"
        yield "b"

    items = stream()
    assert next(items) == "a"
    assert next(items) == "b"
    assert "stream.workflow" not in finished()

    with pytest.raises(StopIteration):
        next(items)

    span = finished()["stream.workflow"]
    assert json.loads(span.attributes[wire.ENTITY_OUTPUT]) == ["a", "b"]
    assert span.status.status_code is StatusCode.UNSET


def test_a_generator_closed_early_ends_its_span_on_close(finished):
    @workflow(name="stream")
    def stream():
        yield 1
        yield 2
        yield 3

    items = stream()
    assert next(items) == 1
    assert "stream.workflow" not in finished()

    items.close()

    span = finished()["stream.workflow"]
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


def test_a_generator_closed_early_runs_its_cleanup_inside_its_span(finished):
    cleanup = []

    @task(name="stream")
    def stream():
        try:
            yield 1
            yield 2
        finally:
            cleanup.append(trace.get_current_span().get_span_context().span_id)

    items = stream()
    next(items)
    items.close()

    assert cleanup == [finished()["stream.task"].context.span_id]


def test_a_generator_body_runs_inside_its_span(finished):
    seen = []

    @task(name="chunk")
    def chunk():
        return "chunk"

    @workflow(name="stream")
    def stream():
        seen.append(trace.get_current_span().get_span_context().span_id)
        yield chunk()
        seen.append(trace.get_current_span().get_span_context().span_id)
        yield chunk()

    assert list(stream()) == ["chunk", "chunk"]

    spans = finished()
    workflow_id = spans["stream.workflow"].context.span_id
    assert seen == [workflow_id, workflow_id]
    assert _parent_id(spans["chunk.task"]) == workflow_id


def test_a_generator_context_does_not_leak_into_the_caller_between_items(respan, exporter):
    between = {}

    @workflow(name="stream")
    def stream():
        yield 1
        yield 2

    with respan.tracer.start_as_current_span("caller") as caller:
        items = stream()
        next(items)
        between["span"] = trace.get_current_span()
        between["position"] = current_position()
        with respan.tracer.start_as_current_span("between"):
            pass
        list(items)

    respan.flush()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert between["span"] is caller
    assert between["position"] is None
    assert _parent_id(spans["between"]) == caller.get_span_context().span_id
    assert wire.WORKFLOW_NAME not in spans["between"].attributes
    assert _parent_id(spans["stream.workflow"]) == caller.get_span_context().span_id


def test_a_span_the_generator_holds_open_across_a_yield_does_not_leak(respan, exporter):
    @workflow(name="stream")
    def stream():
        with respan.tracer.start_as_current_span("held"):
            yield 1
            yield 2

    items = stream()
    next(items)
    outside = trace.get_current_span()
    list(items)

    assert not outside.get_span_context().is_valid


def test_a_scope_the_generator_opens_does_not_leak_into_the_caller_between_items(
    respan, exporter
):
    @workflow(name="stream")
    def stream():
        with propagate_attributes(customer_identifier="generator_customer"):
            yield 1
            yield 2

    items = stream()
    next(items)
    with respan.tracer.start_as_current_span("between"):
        pass
    list(items)

    respan.flush()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert wire.CUSTOMER_IDENTIFIER not in spans["between"].attributes


def test_spans_a_generator_starts_in_later_items_carry_the_scope_it_started_in(
    respan, exporter
):
    @workflow(name="stream")
    def stream():
        for index in range(2):
            respan.tracer.start_span(f"chunk_{index}").end()
            yield index

    with propagate_attributes(customer_identifier="alice"):
        items = stream()
        next(items)
    list(items)

    respan.flush()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["chunk_0"].attributes[wire.CUSTOMER_IDENTIFIER] == "alice"
    assert spans["chunk_1"].parent.span_id == spans["stream.workflow"].context.span_id
    assert spans["chunk_1"].attributes.get(wire.CUSTOMER_IDENTIFIER) == "alice"


def test_values_sent_into_a_decorated_generator_reach_it(finished):
    @task(name="echo")
    def echo():
        received = yield "ready"
        yield f"got {received}"

    items = echo()
    assert next(items) == "ready"
    assert items.send("ping") == "got ping"


def test_a_decorated_generator_returns_its_value_to_yield_from(finished):
    @task(name="count")
    def count():
        yield 1
        return "total"

    def consume():
        result = yield from count()
        return result

    items = consume()
    assert next(items) == 1
    with pytest.raises(StopIteration) as stop:
        next(items)
    assert stop.value.value == "total"


def test_an_exception_inside_a_generator_is_recorded_and_reraised_unchanged(finished):
    error = ValueError("bad chunk")

    @workflow(name="stream")
    def stream():
        yield 1
        raise error

    items = stream()
    next(items)
    with pytest.raises(ValueError) as raised:
        next(items)

    assert raised.value is error
    span = finished()["stream.workflow"]
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


# Async generators


def test_an_async_generator_span_lasts_until_it_is_exhausted(finished):
    observed = {}

    @workflow(name="astream")
    async def astream():
        yield "a"
        await asyncio.sleep(0)
        yield "b"

    async def main():
        items = astream()
        first = await items.__anext__()
        observed["open_after_first"] = "astream.workflow" not in finished()
        rest = [item async for item in items]
        return [first, *rest]

    assert asyncio.run(main()) == ["a", "b"]

    assert observed["open_after_first"] is True
    span = finished()["astream.workflow"]
    assert json.loads(span.attributes[wire.ENTITY_OUTPUT]) == ["a", "b"]


def test_an_async_generator_closed_early_ends_its_span_on_aclose(finished):
    observed = {}

    @workflow(name="astream")
    async def astream():
        yield 1
        yield 2

    async def main():
        items = astream()
        await items.__anext__()
        observed["open_before_close"] = "astream.workflow" not in finished()
        await items.aclose()
        observed["ended_after_close"] = "astream.workflow" in finished()

    asyncio.run(main())

    assert observed == {"open_before_close": True, "ended_after_close": True}
    assert finished()["astream.workflow"].status.status_code is StatusCode.UNSET


def test_an_async_generator_closed_early_runs_its_cleanup_inside_its_span(finished):
    cleanup = []

    @task(name="astream")
    async def astream():
        try:
            yield 1
            yield 2
        finally:
            cleanup.append(trace.get_current_span().get_span_context().span_id)

    async def main():
        items = astream()
        await items.__anext__()
        await items.aclose()

    asyncio.run(main())

    assert cleanup == [finished()["astream.task"].context.span_id]


def test_an_async_generator_context_does_not_leak_into_the_caller(respan, exporter):
    between = {}

    @task(name="astream")
    async def astream():
        yield 1
        yield 2

    async def main():
        items = astream()
        await items.__anext__()
        between["span"] = trace.get_current_span()
        between["position"] = current_position()
        async for _ in items:
            pass

    asyncio.run(main())

    assert not between["span"].get_span_context().is_valid
    assert between["position"] is None


def test_an_exception_inside_an_async_generator_is_recorded_and_reraised(finished):
    error = ConnectionError("stream cut")

    @task(name="astream")
    async def astream():
        yield 1
        raise error

    async def main():
        return [item async for item in astream()]

    with pytest.raises(ConnectionError) as raised:
        asyncio.run(main())

    assert raised.value is error
    span = finished()["astream.task"]
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
