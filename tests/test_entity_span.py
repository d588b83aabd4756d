"""Workflow and task spans behave as the SDK's spans do for everything that touches them:
parents, the client's processors, attributes from outside, status, exceptions, ending."""

import json
import logging
import subprocess
import sys
import textwrap
import threading

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags, TraceState

from respan_core import Respan, workflow
from respan_core.entity import TASK, WORKFLOW, Entity
from respan_core.export import encode


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def respan(exporter):
    client = Respan(exporter=exporter)
    yield client
    client.shutdown()


def _finished(respan, exporter):
    respan.flush()
    return exporter.get_finished_spans()


def _sdk_span_of(function):
    """What the SDK's own span records when `function` is applied to it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("sdk").start_span("sdk")
    function(span)
    span.end()
    return exporter.get_finished_spans()[0]


def test_a_task_is_the_child_of_the_current_span_in_its_trace_with_its_trace_state(
    respan, exporter
):
    remote = SpanContext(
        0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value")]),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        entity = Entity(TASK, "step", respan=respan)
        entity.end()
    finally:
        otel_context.detach(token)

    (span,) = _finished(respan, exporter)
    assert span.context.trace_id == 0x1234
    assert span.parent.span_id == 0x5678
    assert span.context.span_id not in (0, 0x5678)
    assert span.context.trace_state == remote.trace_state
    assert span.context.trace_flags.sampled


def test_without_a_current_span_a_workflow_starts_its_own_sampled_trace(respan, exporter):
    first, second = Entity(WORKFLOW, "one", respan=respan), Entity(WORKFLOW, "two", respan=respan)
    first.end()
    second.end()

    spans = _finished(respan, exporter)
    assert [span.parent for span in spans] == [None, None]
    assert len({span.context.trace_id for span in spans}) == 2
    assert all(span.context.trace_flags.sampled for span in spans)


def test_a_processor_added_to_the_clients_provider_later_sees_workflow_spans(respan):
    later = InMemorySpanExporter()
    respan.tracer_provider.add_span_processor(SimpleSpanProcessor(later))

    Entity(WORKFLOW, "checkout", respan=respan).end()

    assert [span.name for span in later.get_finished_spans()] == ["checkout.workflow"]


def test_a_processor_added_to_the_clients_provider_sees_each_span_start_end_and_flush(
    exporter,
):
    respan = Respan(exporter=exporter, environment="staging")
    seen = []

    class Recorder(SpanProcessor):
        def on_start(self, span, parent_context=None):
            # the client stamps its scope first: this processor sees the stamped span
            seen.append(("start", span.name, span.attributes.get("respan.environment")))

        def on_end(self, span):
            seen.append(("end", span.name, span.attributes.get("respan.environment")))

        def force_flush(self, timeout_millis=30000):
            seen.append(("flush", timeout_millis > 0, None))
            return True

        def shutdown(self):
            seen.append(("shutdown", None, None))

    respan.tracer_provider.add_span_processor(Recorder())
    entity = Entity(WORKFLOW, "checkout", respan=respan)
    with entity.activated():
        respan.tracer.start_span("llm.call").end()
    entity.end()
    assert respan.flush()
    respan.tracer_provider.shutdown()

    assert seen == [
        ("start", "checkout.workflow", "staging"),
        ("start", "llm.call", "staging"),
        ("end", "llm.call", "staging"),
        ("end", "checkout.workflow", "staging"),
        ("flush", True, None),
        ("shutdown", None, None),
    ]
    assert [span.name for span in exporter.get_finished_spans()] == [
        "llm.call", "checkout.workflow",
    ]


def test_attributes_set_from_outside_keep_only_valid_values_without_a_warning(
    respan, exporter, caplog
):
    entity = Entity(WORKFLOW, "job", respan=respan)
    with caplog.at_level(logging.WARNING):
        entity.span.set_attributes({
            "text": "x", "number": 3, "ratio": 0.5, "flag": True,
            "names": ["a", "b"], "numbers": (1, None, 2),
            "mixed": ["a", 1], "mapping": {"a": 1}, "object": object(),
        })
        trace.get_current_span(entity.context).set_attribute("later", "y")
    entity.end()

    (span,) = _finished(respan, exporter)
    assert {key: span.attributes.get(key) for key in (
        "text", "number", "ratio", "flag", "names", "numbers", "later"
    )} == {
        "text": "x", "number": 3, "ratio": 0.5, "flag": True,
        "names": ("a", "b"), "numbers": (1, None, 2), "later": "y",
    }
    assert not {"mixed", "mapping", "object"} & set(span.attributes)
    assert caplog.records == []  # left out quietly: tracing never makes noise in the app


def test_status_and_exceptions_are_recorded_as_the_sdk_records_them(respan, exporter):
    def fail(span):
        span.set_status(StatusCode.ERROR, "first")
        span.set_status(trace.Status(StatusCode.UNSET))  # ignored
        try:
            raise KeyError("missing")
        except KeyError as error:
            span.record_exception(error, {"extra": "1"})

    entity = Entity(WORKFLOW, "job", respan=respan)
    fail(entity.span)
    entity.end()

    (span,) = _finished(respan, exporter)
    sdk = _sdk_span_of(fail)
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "first")
    (event,) = span.events
    (sdk_event,) = sdk.events
    assert event.name == sdk_event.name == "exception"
    assert set(event.attributes) == set(sdk_event.attributes)
    for key in ("exception.type", "exception.message", "exception.escaped", "extra"):
        assert event.attributes[key] == sdk_event.attributes[key]
    assert "KeyError: 'missing'" in event.attributes["exception.stacktrace"]


def test_an_ok_status_stays_ok(respan, exporter):
    entity = Entity(WORKFLOW, "job", respan=respan)
    entity.span.set_status(StatusCode.OK)
    entity.span.set_status(StatusCode.ERROR, "too late")
    entity.end()

    (span,) = _finished(respan, exporter)
    assert span.status.status_code is StatusCode.OK


def test_ending_twice_exports_once_and_nothing_changes_an_ended_span(respan, exporter):
    entity = Entity(WORKFLOW, "job", respan=respan)
    entity.span.end()
    entity.span.end()
    entity.span.set_attribute("after", "end")
    entity.span.update_name("renamed")
    entity.span.add_event("late")
    entity.end()

    (span,) = _finished(respan, exporter)
    assert span.name == "job.workflow"
    assert "after" not in span.attributes
    assert span.events == ()
    assert not entity.span.is_recording()
    assert span.end_time >= span.start_time


def test_events_are_capped_so_a_loop_cannot_grow_a_span_forever(respan, exporter):
    @workflow(name="chatty")
    def chatty():
        for n in range(1000):
            trace.get_current_span().add_event(f"event {n}")

    chatty()

    (span,) = _finished(respan, exporter)
    assert len(span.events) == 128
    assert span.events[-1].name == "event 127"


def test_keys_that_are_not_strings_are_left_out_and_the_batch_still_exports(respan, exporter):
    entity = Entity(WORKFLOW, "job", respan=respan)
    entity.span.set_attributes({200: 3, "kept": "yes"})
    entity.span.add_event("answered", {404: "x", "detail": object(), "codes": [1, 2]})
    entity.end()

    (span,) = _finished(respan, exporter)
    assert 200 not in span.attributes and span.attributes["kept"] == "yes"
    assert dict(span.events[0].attributes) == {"codes": (1, 2)}
    assert json.loads(encode([span]))["resourceSpans"]


def test_past_the_sdks_limits_attributes_and_events_are_dropped_and_counted(respan, exporter):
    entity = Entity(WORKFLOW, "job", respan=respan)
    own = len(entity.span.attributes)
    entity.span.set_attributes({f"key.{n}": n for n in range(200)})
    for n in range(130):
        entity.span.add_event(f"event {n}")
    entity.end()

    (span,) = _finished(respan, exporter)
    assert len(span.attributes) == 128
    assert span.dropped_attributes == own + 200 - 128
    assert (len(span.events), span.dropped_events) == (128, 2)


def test_used_as_a_context_manager_an_escaping_exception_is_recorded(respan, exporter):
    entity = Entity(WORKFLOW, "job", respan=respan)
    with pytest.raises(KeyError), entity.span:
        raise KeyError("missing")
    entity.span.set_status(None)  # ignored, as by the SDK

    (span,) = _finished(respan, exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert span.events[0].attributes["exception.escaped"] == "True"


def test_a_span_ended_by_another_thread_is_final_when_the_processors_get_it(respan):
    seen = []

    class Snapshot(SimpleSpanProcessor):
        def on_end(self, span):
            seen.append(len(span.attributes))

    respan.tracer_provider.add_span_processor(Snapshot(InMemorySpanExporter()))
    entity = Entity(WORKFLOW, "job", respan=respan)
    writing = threading.Thread(
        target=lambda: [entity.span.set_attribute(f"key.{n % 100}", n) for n in range(20_000)]
    )
    writing.start()
    entity.end()
    writing.join()

    assert seen == [len(entity.span.attributes)]


def test_trace_flags_are_the_sdks(respan, exporter):
    provider = TracerProvider()
    sdk_root = provider.get_tracer("sdk").start_span("root")

    root = Entity(WORKFLOW, "root", respan=respan)
    child = Entity(TASK, "child", parent=root.context, respan=respan)
    remote_child = Entity(
        TASK, "remote", respan=respan,
        parent=SpanContext(0x1, 0x2, is_remote=True, trace_flags=TraceFlags(0xFF)),
    )

    expected = sdk_root.get_span_context().trace_flags
    assert root.span.get_span_context().trace_flags == expected
    assert child.span.get_span_context().trace_flags == expected
    assert remote_child.span.get_span_context().trace_flags == expected


def test_with_no_client_the_span_goes_to_the_applications_tracer_with_its_final_attributes():
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from respan_core.entity import WORKFLOW, Entity

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        entity = Entity(WORKFLOW, "nightly")
        entity.end({"celery.state": "SUCCESS"})
        entity.end({"celery.state": "FAILURE"})  # ended already: nothing changes
        (span,) = exporter.get_finished_spans()
        print(span.name, span.attributes["celery.state"])
        """
    )

    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert shown.split() == ["nightly.workflow", "SUCCESS"]
