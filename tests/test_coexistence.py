"""Living with an application's own OpenTelemetry setup and with sentry-sdk, each in a fresh
process (a global TracerProvider can be set once per process)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(tmp_path, *parts):
    """Run the script made of `parts`; its last printed line is JSON."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "RESPAN_LOCAL_STORE": str(tmp_path / "t.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "django_app.settings",
    }
    script = "\n".join(textwrap.dedent(part) for part in parts)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


OURS = """
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from respan_django import apps
ours = InMemorySpanExporter()
apps.start()[1].tracer_provider.add_span_processor(SimpleSpanProcessor(ours))
"""


def test_under_the_applications_own_django_instrumentation_one_trace_per_request(tmp_path):
    result, stderr = _run(
        tmp_path,
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        theirs = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(theirs))
        trace.set_tracer_provider(provider)
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        DjangoInstrumentor().instrument()
        import django
        django.setup()
        """,
        OURS,
        """
        from django.test import Client
        Client().get("/items/3/")
        (server,) = theirs.get_finished_spans()
        (workflow,) = ours.get_finished_spans()
        print(json.dumps({
            "same_trace": server.context.trace_id == workflow.context.trace_id,
            "nested": workflow.parent.span_id == server.context.span_id,
            "still_theirs": trace.get_tracer_provider() is provider,
            "workflow": workflow.name,
        }))
        """,
    )

    assert result == {"same_trace": True, "nested": True, "still_theirs": True,
                      "workflow": "GET /items/<int:pk>/"}
    assert "Overriding of current TracerProvider" not in stderr


def test_with_sentry_tracing_on_each_request_is_still_one_workflow_span(tmp_path):
    result, stderr = _run(
        tmp_path,
        """
        import json
        import sentry_sdk
        from sentry_sdk.transport import Transport
        class Nowhere(Transport):
            def capture_envelope(self, envelope):
                pass
        sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Nowhere,
                        traces_sample_rate=1.0)
        import django
        django.setup()
        """,
        OURS,
        """
        from django.test import Client
        client = Client()
        client.get("/items/3/")
        client.get("/items/4/")
        spans = ours.get_finished_spans()
        print(json.dumps({
            "names": [s.name for s in spans],
            "traces": len({s.context.trace_id for s in spans}),
        }))
        """,
    )

    assert result == {"names": ["GET /items/<int:pk>/", "GET /items/<int:pk>/"], "traces": 2}
