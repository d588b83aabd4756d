"""A plain Celery application (no web framework) for the Celery hook tests.

The worker process creates its Respan client when it starts (from RESPAN_API_KEY and
RESPAN_BASE_URL) and connects the hooks with the one call a Celery user makes. The broker is
TEST_BROKER_URL (Redis unless a test says otherwise); results, which chords need, go to Redis.
"""

import os
import time

from celery import Celery, signals

from respan_core import task

app = Celery(
    "celery_app",
    broker=os.environ.get("TEST_BROKER_URL") or os.environ["TEST_REDIS_URL"],
    backend=os.environ["TEST_REDIS_URL"],
)
app.conf.update(
    task_default_queue=os.environ["TEST_CELERY_QUEUE"],
    result_expires=600,
    worker_hijack_root_logger=False,
    beat_schedule={"tick": {"task": "celery_app.tick", "schedule": 1.0}},
)


class TaskFailed(Exception):
    pass


@app.task
def add(x, y):
    return x + y


@app.task
def total(numbers):
    return sum(numbers)


@app.task
def spawn():
    """A task that sends a task."""
    add.delay(5, 5)
    return "spawned"


@app.task
def fail():
    raise TaskFailed("the task failed")


@app.task(bind=True, max_retries=1)
def flaky(self):
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("the first attempt fails"), countdown=0)
    return "second attempt"


@app.task(bind=True, max_retries=2)
def doomed(self):
    raise self.retry(exc=TaskFailed(f"attempt {self.request.retries} fails"), countdown=0)


@app.task
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def tick():
    return "tick"


@task(name="lookup")
def lookup():
    return "found"


@app.task
def nested():
    """A task that calls a traced function of the application's."""
    return lookup()


def start_tracing(**_):
    import respan_core.celery
    from respan_core import Respan

    respan_core.celery.connect(Respan(service_name="celery-tests"))
    if os.environ.get("TEST_OPENTELEMETRY_CELERY"):  # the application's own Celery hooks too
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.trace import TracerProvider

        CeleryInstrumentor().instrument(tracer_provider=TracerProvider())


# As most applications do, before the worker starts its pool; or, with TEST_CONNECT_IN_CHILD,
# in each child process once it has started (and built the functions that run its tasks).
if os.environ.get("TEST_CONNECT_IN_CHILD"):
    signals.worker_process_init.connect(start_tracing)
else:
    signals.worker_init.connect(start_tracing)
    signals.beat_init.connect(start_tracing)
