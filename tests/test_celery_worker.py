"""The Celery hooks with a plain Celery app: a real prefork worker over Redis, and eager mode."""

import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
from celery import chain, chord, group, signals
from celery_app import TaskFailed, add, app, doomed, fail, flaky, nested, spawn, total
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags, TraceState

import respan_core.celery
from respan_core import Respan, propagate_attributes, task, wire, workflow

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def worker(ingest, tmp_path_factory):
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {
        **os.environ,
        "RESPAN_API_KEY": "celery-test-key",
        "RESPAN_BASE_URL": ingest.base_url,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork",
             "--concurrency", "2", "--loglevel", "warning", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=HERE, env=env, stdout=output, stderr=subprocess.STDOUT,
        )
    yield process
    process.terminate()
    process.wait(timeout=30)


class Plan:
    """Metadata an application may pass that JSON cannot encode."""

    def __str__(self):
        return "pro"


def _send_in_workflow(publisher, send, name):
    """Run `send()` inside a workflow span named `name`, within a customer's scope.

    `send` is a signature to `.delay()`, or a callable that sends however it likes.
    """

    @workflow(name=name)
    def handle():
        with propagate_attributes(
            customer_identifier="customer-7",
            thread_identifier="thread-7",
            metadata={"plan": Plan()},
        ):
            send.delay() if hasattr(send, "delay") else send()

    handle()
    publisher.flush()


def _trace_of(ingest, workflow_name, count):
    def arrived(spans):
        roots = [s for s in spans if s.name == f"{workflow_name}.workflow"]
        return roots and len([s for s in spans if s.trace_id == roots[0].trace_id]) >= count

    spans = ingest.wait_for(arrived)
    root = next(s for s in spans if s.name == f"{workflow_name}.workflow")
    return root, [s for s in spans if s.trace_id == root.trace_id and s is not root]


def test_a_task_runs_in_the_senders_trace_with_its_scope(worker, publisher, ingest):
    _send_in_workflow(publisher, add.s(2, 3), "send_add")

    root, (task_span,) = _trace_of(ingest, "send_add", 2)
    assert task_span.name == "celery_app.add.task"
    assert task_span.parent_span_id == root.span_id
    assert task_span.attributes[wire.SPAN_KIND] == "task"
    assert task_span.attributes[wire.WORKFLOW_NAME] == "send_add"
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-7"
    assert task_span.attributes[wire.THREAD_IDENTIFIER] == "thread-7"
    assert task_span.attributes["respan.metadata.plan"] == "pro"
    assert task_span.attributes["celery.state"] == "SUCCESS"


def test_a_failing_task_is_an_error_span_with_the_exception(worker, publisher, ingest):
    _send_in_workflow(publisher, fail.s(), "send_fail")

    _, (task_span,) = _trace_of(ingest, "send_fail", 2)
    assert task_span.status_code == 2
    assert task_span.attributes["celery.state"] == "FAILURE"
    (event,) = task_span.events
    attributes = {a["key"]: a["value"].get("stringValue") for a in event["attributes"]}
    assert event["name"] == "exception"
    assert attributes["exception.type"] == "celery_app.TaskFailed"
    assert attributes["exception.message"] == "the task failed"


def test_a_retried_task_is_one_span_per_attempt_in_the_same_trace(worker, publisher, ingest):
    _send_in_workflow(publisher, flaky.s(), "send_flaky")

    root, spans = _trace_of(ingest, "send_flaky", 3)
    first, second = sorted(spans, key=lambda s: s.attributes["celery.retries"])
    assert first.parent_span_id == root.span_id
    assert second.parent_span_id == first.span_id
    assert [event["name"] for event in first.events] == ["celery.retry"]
    assert first.attributes["celery.state"] == "RETRY"
    assert second.attributes["celery.retries"] == 1
    assert second.attributes["celery.state"] == "SUCCESS"
    assert second.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-7"


def test_an_eager_task_nests_in_the_callers_span_with_its_scope():
    exporter = InMemorySpanExporter()
    client = Respan(exporter=exporter)
    respan_core.celery.connect(client)
    try:

        @workflow(name="eager_caller")
        def caller():
            with propagate_attributes(customer_identifier="customer-eager"):
                return add.apply(args=(1, 2)).get()

        assert caller() == 3
        client.flush()
    finally:
        client.shutdown()

    task_span = next(s for s in exporter.get_finished_spans() if s.name == "celery_app.add.task")
    root = next(s for s in exporter.get_finished_spans() if s.name == "eager_caller.workflow")
    assert task_span.parent.span_id == root.context.span_id
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-eager"


def test_an_eager_task_failure_propagates_unchanged():
    exporter = InMemorySpanExporter()
    client = Respan(exporter=exporter)
    respan_core.celery.connect(client)
    try:
        with pytest.raises(TaskFailed, match="the task failed"):
            fail.apply(throw=True)
        client.flush()
    finally:
        client.shutdown()

    (span,) = [s for s in exporter.get_finished_spans() if s.name == "celery_app.fail.workflow"]
    assert span.status.status_code is StatusCode.ERROR


def test_the_task_span_encloses_other_receivers_of_the_run_signals():
    exporter = InMemorySpanExporter()
    client = Respan(exporter=exporter)
    respan_core.celery.connect(client)
    before, after = task(name="before")(lambda **_: None), task(name="after")(lambda **_: None)
    signals.task_prerun.connect(before, weak=False)
    signals.task_postrun.connect(after, weak=False)
    try:
        assert add.apply(args=(2, 3)).get() == 5
        client.flush()
    finally:
        signals.task_prerun.disconnect(before)
        signals.task_postrun.disconnect(after)
        client.shutdown()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    task_span = spans["celery_app.add.workflow"]
    for name in ("before.task", "after.task"):
        assert spans[name].context.trace_id == task_span.context.trace_id
        assert spans[name].parent.span_id == task_span.context.span_id


@pytest.fixture
def in_process():
    """A client of this process, the hooks connected to it; its spans, once flushed."""
    exporter = InMemorySpanExporter()
    client = Respan(exporter=exporter)
    respan_core.celery.connect(client)

    def spans():
        client.flush()
        return {span.name: span for span in exporter.get_finished_spans()}

    yield spans
    client.shutdown()


def test_under_opentelemetrys_celery_hooks_what_a_task_does_is_under_its_span(in_process):
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())  # its own span current in the task
    try:
        assert nested.apply().get() == "found"
    finally:
        instrumentor.uninstrument()

    spans = in_process()
    task_span = spans["celery_app.nested.workflow"]
    assert spans["lookup.task"].parent.span_id == task_span.context.span_id


def test_beside_sentrys_celery_integration_a_task_is_one_span_with_what_it_does_under_it():
    # In a process of its own: sentry-sdk wraps Celery's build_tracer as the hooks do.
    script = """
        import json
        import sentry_sdk
        from celery import Celery
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from sentry_sdk.integrations.celery import CeleryIntegration
        from sentry_sdk.transport import Transport
        import respan_core.celery
        from respan_core import Respan, task

        class Nowhere(Transport):
            def capture_envelope(self, envelope):
                pass

        sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Nowhere,
                        integrations=[CeleryIntegration()], traces_sample_rate=1.0)
        exporter = InMemorySpanExporter()
        client = Respan(exporter=exporter)
        respan_core.celery.connect(client)
        app = Celery("sentried", broker="memory://")

        @task(name="inside")
        def inside():
            return 1

        @app.task
        def work():
            return inside()

        assert work.apply().get() == 1
        client.flush()
        spans = exporter.get_finished_spans()
        (task_span,) = [span for span in spans if span.name == "sentried.work.workflow"]
        print(json.dumps({
            "names": sorted(span.name for span in spans),
            "inside_under_task": [
                span.parent.span_id == task_span.context.span_id
                for span in spans if span.name == "inside.task"
            ],
        }))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "names": ["inside.task", "sentried.work.workflow"],
        "inside_under_task": [True],
    }


@app.task(bind=True)
def replaced_by_a_failure(self):
    return self.replace(fail.s())


@app.task
def exits():
    raise SystemExit(3)


def test_an_eager_task_replaced_by_a_failing_one_is_an_error_too(in_process):
    replaced_by_a_failure.apply()

    spans = in_process()
    for name in ("test_celery_worker.replaced_by_a_failure.workflow", "celery_app.fail.task"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert spans[name].attributes["celery.state"] == "FAILURE"
        assert spans[name].events[0].attributes["exception.type"] == "celery_app.TaskFailed"


def test_a_task_celery_cannot_run_is_an_error_not_a_success(in_process):
    from celery.app.trace import build_tracer

    tracer = build_tracer(add.name, add, app=app)  # as a worker runs a task from a message
    tracer("t-1", (1,), [("y", 2)], {"id": "t-1", "is_eager": False})  # kwargs not a mapping

    span = in_process()["celery_app.add.workflow"]
    assert span.attributes["celery.state"] == "FAILURE"
    assert span.status.status_code is StatusCode.ERROR
    assert "InvalidTaskError" in span.events[0].attributes["exception.type"]


def test_an_eager_task_that_exits_still_ends_its_span(in_process):
    with pytest.raises(SystemExit):
        exits.apply(throw=True)

    span = in_process()["test_celery_worker.exits.workflow"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["celery.state"] == "FAILURE"


def test_a_consumer_imported_before_the_hooks_builds_tracers_that_trace():
    # A worker's consumer builds its tracers again each time it reconnects to the broker, with
    # the build_tracer it imported: hooks connected after that import must be in those too.
    task_id = str(uuid.uuid4())
    script = f"""
        import json
        from celery.worker.consumer import consumer
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import respan_core.celery
        from respan_core import Respan
        from celery_app import add, app

        exporter = InMemorySpanExporter()
        client = Respan(exporter=exporter)
        respan_core.celery.connect(client)
        tracer = consumer.build_tracer(add.name, add, app=app)
        tracer("{task_id}", (1, 2), {{}}, {{"id": "{task_id}", "retries": 0, "is_eager": False}})
        client.flush()
        print(json.dumps([
            (span.name, span.attributes["celery.task_id"], span.attributes["celery.state"])
            for span in exporter.get_finished_spans()
        ]))
    """
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout.strip().splitlines()[-1])
    assert spans == [["celery_app.add.workflow", task_id, "SUCCESS"]]


@pytest.fixture
def plain_sender():
    """Send as a Celery client without the hooks would: our publish hook disconnected."""
    uid = "respan_core._on_publish"
    signals.before_task_publish.disconnect(dispatch_uid=uid)
    yield
    respan_core.celery.connect()


def _task_span(ingest, task_id):
    def arrived(spans):
        return any(s.attributes.get("celery.task_id") == task_id for s in spans)

    (span,) = [s for s in ingest.wait_for(arrived) if s.attributes.get("celery.task_id") == task_id]
    return span


def test_a_header_sent_by_another_client_is_honoured(worker, ingest, plain_sender):
    trace_id, parent_id = "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"
    header = {
        "traceparent": f"00-{trace_id}-{parent_id}-01",
        "scope": {"customer_identifier": "customer-9"},
        "position": ["nightly", ""],
    }
    result = add.apply_async((1, 1), headers={"respan": header})

    span = _task_span(ingest, result.id)
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent_id)
    assert span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-9"
    assert span.attributes[wire.WORKFLOW_NAME] == "nightly"


@pytest.mark.parametrize(
    "header",
    ["garbage", {"traceparent": 123}, {"traceparent": "00-zz-zz-01", "tracestate": 12},
     {"scope": {"customer_identifier": ["not", "a", "string"]}, "position": "x" * 10_000}],
)
def test_a_malformed_header_is_ignored_and_the_task_runs_in_a_trace_of_its_own(
    worker, ingest, plain_sender, header
):
    result = add.apply_async((1, 1), headers={"respan": header})

    span = _task_span(ingest, result.id)
    assert span.name == "celery_app.add.workflow"
    assert span.parent_span_id == ""
    assert span.attributes["celery.state"] == "SUCCESS"
    assert wire.CUSTOMER_IDENTIFIER not in span.attributes


def _assert_sent_from(root, span):
    assert span.trace_id == root.trace_id
    assert span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-7"
    assert span.attributes[wire.WORKFLOW_NAME] == root.attributes[wire.WORKFLOW_NAME]


@pytest.mark.parametrize(
    "how",
    ["countdown", "eta", "send_task", "signature", "ignore_result"],
)
def test_every_way_of_sending_keeps_the_trace_and_the_scope(worker, publisher, ingest, how):
    sends = {
        "countdown": lambda: add.apply_async((1, 2), countdown=1),
        "eta": lambda: add.apply_async(
            (1, 2), eta=datetime.now(UTC) + timedelta(seconds=1)
        ),
        "send_task": lambda: app.send_task("celery_app.add", args=(1, 2)),
        "signature": lambda: add.signature((1, 2)).apply_async(),
        "ignore_result": lambda: add.apply_async((1, 2), ignore_result=True),
    }
    _send_in_workflow(publisher, sends[how], f"send_{how}")

    root, (task_span,) = _trace_of(ingest, f"send_{how}", 2)
    assert task_span.name == "celery_app.add.task"
    assert task_span.parent_span_id == root.span_id
    _assert_sent_from(root, task_span)


def test_a_task_span_links_to_the_span_that_sent_it(worker, publisher, ingest):
    _send_in_workflow(publisher, add.s(4, 4), "send_linked")

    root, (task_span,) = _trace_of(ingest, "send_linked", 2)
    assert task_span.links == [(root.trace_id, root.span_id)]


def test_a_task_sent_from_a_task_nests_under_it(worker, publisher, ingest):
    _send_in_workflow(publisher, spawn.s(), "send_spawn")

    root, spans = _trace_of(ingest, "send_spawn", 3)
    parent = next(s for s in spans if s.name == "celery_app.spawn.task")
    child = next(s for s in spans if s.name == "celery_app.add.task")
    assert parent.parent_span_id == root.span_id
    assert child.parent_span_id == parent.span_id
    assert child.attributes[wire.ENTITY_PATH] == "celery_app.spawn.celery_app.add"
    _assert_sent_from(root, child)


def test_a_chain_runs_each_link_in_the_trace(worker, publisher, ingest):
    _send_in_workflow(publisher, lambda: chain(add.s(1, 2), add.s(3)).apply_async(), "chain")

    root, spans = _trace_of(ingest, "chain", 3)
    first, second = sorted(spans, key=lambda s: s.parent_span_id != root.span_id)
    assert first.parent_span_id == root.span_id
    assert second.parent_span_id == first.span_id
    for span in spans:
        _assert_sent_from(root, span)


def test_a_group_runs_every_member_under_the_sender(worker, publisher, ingest):
    _send_in_workflow(publisher, lambda: group(add.s(1, 1), add.s(2, 2)).apply_async(), "group")

    root, spans = _trace_of(ingest, "group", 3)
    assert [s.parent_span_id for s in spans] == [root.span_id, root.span_id]
    for span in spans:
        _assert_sent_from(root, span)


def test_a_chord_runs_its_header_and_its_callback_in_the_trace(worker, publisher, ingest):
    _send_in_workflow(
        publisher, lambda: chord([add.s(1, 1), add.s(2, 2)], total.s()).apply_async(), "chord"
    )

    root, spans = _trace_of(ingest, "chord", 4)
    header = [s for s in spans if s.name == "celery_app.add.task"]
    (callback,) = [s for s in spans if s.name == "celery_app.total.task"]
    assert [s.parent_span_id for s in header] == [root.span_id, root.span_id]
    assert callback.parent_span_id in {s.span_id for s in header}
    for span in spans:
        _assert_sent_from(root, span)


def test_a_task_that_fails_every_retry_ends_in_an_error(worker, publisher, ingest):
    _send_in_workflow(publisher, doomed.s(), "send_doomed")

    root, spans = _trace_of(ingest, "send_doomed", 4)
    attempts = sorted(spans, key=lambda s: s.attributes["celery.retries"])
    assert [s.attributes["celery.retries"] for s in attempts] == [0, 1, 2]
    assert [s.attributes["celery.state"] for s in attempts] == ["RETRY", "RETRY", "FAILURE"]
    assert [s.status_code for s in attempts] == [0, 0, 2]
    for span in attempts:
        _assert_sent_from(root, span)


def test_identity_that_is_not_a_string_reaches_the_worker_as_a_string(worker, publisher, ingest):
    @workflow(name="numeric_identity")
    def handle():
        with propagate_attributes(customer_identifier=42, prompt={"prompt_id": "abc"}):
            add.delay(1, 1)

    handle()
    publisher.flush()

    _, (task_span,) = _trace_of(ingest, "numeric_identity", 2)
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "42"
    assert task_span.attributes["respan.prompt"] == '{"prompt_id": "abc"}'


def test_the_header_carries_the_publishing_span_with_its_trace_state():
    publishing = SpanContext(
        0x5BF92F3577B34DA6A3CE929D0E0E4736, 0x10F067AA0BA902B7, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("vendor", "v1")]),
    )
    headers = {}
    with trace.use_span(trace.NonRecordingSpan(publishing)):
        respan_core.celery._on_publish(headers=headers)

    assert headers["respan"]["traceparent"] == (
        "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"
    )
    sender = respan_core.celery._sender(headers["respan"])
    assert (sender.trace_id, sender.span_id, sender.is_remote) == (
        publishing.trace_id, publishing.span_id, True
    )
    assert sender.trace_state == publishing.trace_state


def test_the_header_keeps_leading_zeros_and_flags_and_reads_back_the_same_span_context():
    publishing = SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(0))
    headers = {}
    with trace.use_span(trace.NonRecordingSpan(publishing)):
        respan_core.celery._on_publish(headers=headers)

    assert headers["respan"] == {"traceparent": f"00-{1:032x}-{2:016x}-00"}  # no tracestate
    assert respan_core.celery._sender(headers["respan"]) == publishing  # fields and validity


def test_the_header_carries_a_prompt_given_as_any_mapping():
    headers = {}
    with propagate_attributes(prompt=MappingProxyType({"prompt_id": "abc"})):
        respan_core.celery._on_publish(headers=headers)

    assert headers["respan"]["scope"] == {"prompt": '{"prompt_id": "abc"}'}
