"""A plain Celery application (no web framework) for the Celery hook tests.

The worker process creates its Respan client when it starts (from RESPAN_API_KEY and
RESPAN_BASE_URL) and connects the hooks with the one call a Celery user makes.
"""

import os

from celery import Celery, signals

app = Celery("celery_app", broker=os.environ["TEST_REDIS_URL"])
app.conf.update(
    task_default_queue=os.environ["TEST_CELERY_QUEUE"],
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


class TaskFailed(Exception):
    pass


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise TaskFailed("the task failed")


@app.task(bind=True, max_retries=1)
def flaky(self):
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("the first attempt fails"), countdown=0)
    return "second attempt"


@signals.worker_init.connect
def start_tracing(**_):
    import respan_core.celery
    from respan_core import Respan

    respan_core.celery.connect(Respan(service_name="celery-tests"))
