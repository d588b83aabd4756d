"""What the Celery hooks add to each task, against opentelemetry-instrumentation-celery.

Each configuration runs in a process of its own: a Celery app on Kombu's in-memory transport
sends a no-op task inside a parent span (the publish hook) and runs it from the message's
headers (the prerun and postrun hooks), in rounds of 500 tasks that the configurations take
in turn (see rounds.py); the median over the turns counts. Spans go through a batch processor
to an exporter that discards them, the same for both instrumentations. The in-memory broker
keeps every message in the process, where a real one would not: it is emptied before each
round, or the garbage collector's work on the growing pile would count for every
configuration. With valgrind installed, the instructions and cache misses each adds per task
are counted too.

    python benchmarks/celery_hooks.py            # prints per-task costs and the ratios

Target: our added cost is at most 0.25 of opentelemetry-instrumentation-celery's.
"""

from __future__ import annotations

import shutil
import sys

import rounds

TASKS = 500
TURNS = 40
CONFIGS = ("bare", "respan", "opentelemetry")


def serve(config: str) -> None:
    """Set one configuration up, warm it up, then time rounds of tasks on demand."""
    from celery import Celery, signals
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    app = Celery("bench", broker="memory://")
    app.conf.update(task_ignore_result=True)

    @app.task
    def noop():
        return None

    published: dict = {}

    @signals.before_task_publish.connect(weak=False)
    def keep_headers(headers=None, **_):
        published["headers"] = headers  # connected in every configuration alike

    if config == "respan":
        import respan_core.celery
        from respan_core import Respan

        respan_core.celery.connect(Respan(exporter=Discard()))
    elif config == "opentelemetry":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        CeleryInstrumentor().instrument(tracer_provider=provider)
    # The application's own span the task is sent from: the same in every configuration.
    tracer = TracerProvider().get_tracer("bench")

    def one_task() -> None:
        with tracer.start_as_current_span("request"):
            noop.apply_async()
        noop.apply(headers=dict(published["headers"]))

    for _ in range(200):  # warm up
        one_task()
    channel = app.connection_for_write().default_channel
    rounds.serve(one_task, TASKS, before_round=lambda: channel.queue_purge("celery"))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
        return

    configurations = {config: [config] for config in CONFIGS}
    bare, added = rounds.added_costs(__file__, configurations, TURNS)
    ours, theirs = added["respan"], added["opentelemetry"]
    print(f"per task, publish + run, median of {TURNS} turns of {TASKS} tasks each:")
    print(f"  bare Celery                        {bare:8.1f} us")
    print(f"  + respan_core.celery               {ours:+8.1f} us")
    print(f"  + opentelemetry-instrumentation    {theirs:+8.1f} us")
    print(f"ratio of added costs (target <= 0.25): {ours / theirs:.2f}")
    if shutil.which("valgrind"):
        for measure, (bare, added) in rounds.added_counts(__file__, configurations).items():
            ours, theirs = added["respan"], added["opentelemetry"]
            print(f"{measure} per task, counted by cachegrind:")
            print(f"  bare Celery                        {bare:8.0f}")
            print(f"  + respan_core.celery               {ours:+8.0f}")
            print(f"  + opentelemetry-instrumentation    {theirs:+8.0f}")
            print(f"ratio of added {measure}: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
