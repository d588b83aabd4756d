"""Worker lifecycles lose nothing: pools, child recycling, warm shutdown, time limits, beat,
and RabbitMQ as the broker. Each test starts its own worker on a queue of its own."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery, signals
from celery_app import add, nested, sleepy

import respan_core.celery
from respan_core import propagate_attributes, wire, workflow

HERE = Path(__file__).resolve().parent
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


class Worker:
    def __init__(self, process, queue, log):
        self.process, self.queue, self.log = process, queue, log

    def warm_shutdown(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


@pytest.fixture
def start_worker(ingest, tmp_path):
    """Start a worker (`celery -A celery_app worker` plus `options`) on a queue of its own."""
    workers = []

    def start(*options, broker=None, queue=None, command="worker", env=None):
        queue = queue or f"{os.environ['TEST_CELERY_QUEUE']}-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "RESPAN_API_KEY": "lifecycle-key",
            "RESPAN_BASE_URL": ingest.base_url,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        if broker:
            env["TEST_BROKER_URL"] = broker
        arguments = ["--loglevel", "warning"]
        if command == "worker":
            arguments += ["-Q", queue, "--without-gossip", "--without-mingle",
                          "--without-heartbeat"]
        log = tmp_path / f"{command}-{len(workers)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", command, *arguments,
                 *options],
                cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
            )
        worker = Worker(process, queue, log)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def _in_workflow(publisher, name, send):
    @workflow(name=name)
    def handle():
        with propagate_attributes(customer_identifier="customer-lc"):
            send()

    handle()
    publisher.flush()


def _spans_of(ingest, root_name, count, timeout=60):
    def arrived(spans):
        roots = [s for s in spans if s.name == f"{root_name}.workflow"]
        return roots and len([s for s in spans if s.trace_id == roots[0].trace_id]) >= count

    spans = ingest.wait_for(arrived, timeout=timeout)
    root = next(s for s in spans if s.name == f"{root_name}.workflow")
    return root, [s for s in spans if s.trace_id == root.trace_id and s is not root]


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_every_pool_runs_the_task_in_the_senders_trace(publisher, ingest, start_worker, pool):
    worker = start_worker("--pool", pool, "--concurrency", "2")
    name = f"pool_{pool}"

    _in_workflow(publisher, name, lambda: add.apply_async((1, 1), queue=worker.queue))

    root, (task_span,) = _spans_of(ingest, name, 2)
    assert task_span.parent_span_id == root.span_id
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-lc"


def test_beside_opentelemetrys_celery_hooks_what_a_task_does_stays_under_its_span(
    publisher, ingest, start_worker
):
    worker = start_worker(
        "--pool", "prefork", "--concurrency", "1", env={"TEST_OPENTELEMETRY_CELERY": "1"}
    )

    _in_workflow(publisher, "beside_otel", lambda: nested.apply_async(queue=worker.queue))

    root, spans = _spans_of(ingest, "beside_otel", 3)
    task_span = next(span for span in spans if span.name == "celery_app.nested.task")
    (inner,) = [span for span in spans if span.name == "lookup.task"]
    assert task_span.parent_span_id == root.span_id
    assert inner.parent_span_id == task_span.span_id
    assert inner.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-lc"


def test_hooks_connected_in_a_started_child_trace_its_tasks(publisher, ingest, start_worker):
    # Connected from worker_process_init: the child has already built its tasks' tracers.
    worker = start_worker(
        "--pool", "prefork", "--concurrency", "1", env={"TEST_CONNECT_IN_CHILD": "1"}
    )

    _in_workflow(publisher, "in_child", lambda: add.apply_async((2, 2), queue=worker.queue))

    root, (task_span,) = _spans_of(ingest, "in_child", 2)
    assert task_span.name == "celery_app.add.task"
    assert task_span.parent_span_id == root.span_id
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-lc"
    assert task_span.attributes["celery.state"] == "SUCCESS"


def test_a_child_recycled_after_every_task_exports_every_span(publisher, ingest, start_worker):
    worker = start_worker("--pool", "prefork", "--concurrency", "2", "--max-tasks-per-child", "1")

    _in_workflow(
        publisher, "recycled",
        lambda: [add.apply_async((n, n), queue=worker.queue) for n in range(20)],
    )

    root, spans = _spans_of(ingest, "recycled", 21)
    assert len(spans) == 20
    assert len({s.span_id for s in spans}) == 20
    assert {s.parent_span_id for s in spans} == {root.span_id}


def test_a_warm_shutdown_flushes_the_running_tasks_span(publisher, ingest, start_worker):
    worker = start_worker("--pool", "prefork", "--concurrency", "1")
    _in_workflow(publisher, "warm", lambda: sleepy.apply_async((2,), queue=worker.queue))
    time.sleep(1.5)  # the task is running

    worker.warm_shutdown()

    root, (task_span,) = _spans_of(ingest, "warm", 2, timeout=5)
    assert task_span.attributes["celery.state"] == "SUCCESS"


def test_a_child_killed_by_the_time_limit_still_has_an_error_span(
    publisher, ingest, start_worker
):
    worker = start_worker("--pool", "prefork", "--concurrency", "1")

    _in_workflow(
        publisher, "time_limit",
        lambda: sleepy.apply_async((30,), queue=worker.queue, time_limit=2),
    )

    root, _ = _spans_of(ingest, "time_limit", 2)
    worker.warm_shutdown()  # whatever else the worker had would be exported by now

    (task_span,) = [
        s for s in ingest.spans() if s.trace_id == root.trace_id and s.span_id != root.span_id
    ]
    assert task_span.name == "celery_app.sleepy.task"
    assert task_span.parent_span_id == root.span_id
    assert task_span.status_code == 2
    assert "TimeLimitExceeded" in task_span.events[0]["attributes"][0]["value"]["stringValue"]
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-lc"


def test_rabbitmq_as_the_broker_carries_the_trace(publisher, ingest, start_worker):
    worker = start_worker("--pool", "prefork", "--concurrency", "1", broker=RABBITMQ_URL)
    sender = Celery("celery_app", broker=RABBITMQ_URL)

    _in_workflow(
        publisher, "over_rabbitmq",
        lambda: sender.send_task("celery_app.add", args=(2, 2), queue=worker.queue),
    )

    root, (task_span,) = _spans_of(ingest, "over_rabbitmq", 2)
    assert task_span.parent_span_id == root.span_id
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == "customer-lc"


def test_each_beat_run_is_a_trace_of_its_own_rooted_in_a_workflow(ingest, start_worker, tmp_path):
    start_worker("--pool", "prefork", "--concurrency", "1", queue=os.environ["TEST_CELERY_QUEUE"])
    start_worker("--schedule", str(tmp_path / "beat-schedule"), "--max-interval", "1",
                 command="beat")

    def two_runs(spans):
        return len([s for s in spans if s.name == "celery_app.tick.workflow"]) >= 2

    runs = [s for s in ingest.wait_for(two_runs) if s.name == "celery_app.tick.workflow"]
    assert len({s.trace_id for s in runs}) == len(runs)
    for run in runs:
        assert run.parent_span_id == ""
        assert run.attributes[wire.SPAN_KIND] == "workflow"
        assert run.attributes[wire.WORKFLOW_NAME] == "celery_app.tick"


def test_a_task_from_a_client_without_the_hooks_starts_a_clean_trace(
    publisher, ingest, start_worker
):
    worker = start_worker("--pool", "solo")
    _in_workflow(publisher, "before_plain", lambda: add.apply_async((1, 1), queue=worker.queue))
    _spans_of(ingest, "before_plain", 2)

    signals.before_task_publish.disconnect(dispatch_uid="respan_core._on_publish")
    try:
        plain = add.apply_async((7, 7), queue=worker.queue)
    finally:
        respan_core.celery.connect()

    def arrived(spans):
        return any(s.attributes.get("celery.task_id") == plain.id for s in spans)

    spans = ingest.wait_for(arrived)
    (span,) = [s for s in spans if s.attributes.get("celery.task_id") == plain.id]
    assert span.name == "celery_app.add.workflow"
    assert span.parent_span_id == ""
    assert wire.CUSTOMER_IDENTIFIER not in span.attributes
    worker.warm_shutdown()
    assert "Failed to detach context" not in worker.log.read_text()
