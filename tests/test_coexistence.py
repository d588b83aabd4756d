"""Living with an application's own OpenTelemetry setup and with sentry-sdk, each in a fresh
process (a global TracerProvider can be set once per process)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


# The Flask versions, through a real werkzeug server on 127.0.0.1.

FLASK_APP = """
import json
import threading
import time
import flask
import requests
from flask import Response, stream_with_context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.serving import make_server
from respan_core import task, wire
from respan_flask import Respan

@task(name="lookup")
def lookup(item_id):
    return f"item {item_id}"

def create_app():
    app = flask.Flask("shop")  # looked up now: OpenTelemetry's `instrument()` replaces it
    app.config.update(
        RESPAN_INSTRUMENT_LITELLM=False, RESPAN_INSTRUMENT_CELERY=False,
        RESPAN_CUSTOMER_IDENTIFIER=lambda: "user_7",
    )

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return lookup(item_id)

    @app.get("/stream")
    def stream():
        return Response(stream_with_context(lookup(n) + "\\n" for n in (1, 2)))

    @app.get("/boom")
    def boom():
        raise RuntimeError("the view failed")

    return app

def serve(app, *paths):
    ours = InMemorySpanExporter()
    Respan.client(app).tracer_provider.add_span_processor(SimpleSpanProcessor(ours))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        statuses = [
            requests.get(f"http://127.0.0.1:{server.server_port}{path}").status_code
            for path in paths
        ]
    finally:
        server.shutdown()
        server.server_close()
    return ours, statuses

def parent_id(span):
    return span.parent.span_id if span.parent else None

def named(spans, *names):
    return [next(span for span in spans if span.name == name) for name in names]

def wait_for(condition):
    # A request's spans end as its body is closed, which can be just after the client read it.
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)

def finished(exporter, count):
    wait_for(lambda: len(exporter.get_finished_spans()) >= count)
    return exporter.get_finished_spans()
"""

THEIR_OPENTELEMETRY = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.instrumentation.flask import FlaskInstrumentor
theirs = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(theirs))
trace.set_tracer_provider(provider)
"""


@pytest.mark.parametrize(
    "setup",
    [
        "app = create_app(); Respan(app); FlaskInstrumentor().instrument_app(app)",
        "app = create_app(); FlaskInstrumentor().instrument_app(app); Respan(app)",
        "FlaskInstrumentor().instrument(); app = create_app(); Respan(app)",
    ],
    ids=["instrument_app-after-Respan", "instrument_app-before-Respan", "instrument-globally"],
)
def test_under_the_applications_own_flask_instrumentation_one_trace_per_request(
    tmp_path, setup
):
    result, stderr = _run(
        tmp_path,
        FLASK_APP,
        THEIR_OPENTELEMETRY,
        setup,
        """
        ours, statuses = serve(app, "/items/3", "/items/4")
        servers, spans = finished(theirs, 2), finished(ours, 4)
        requests_ = []
        for server in servers:
            in_trace = [span for span in spans if span.context.trace_id == server.context.trace_id]
            workflow, inner = named(in_trace, "GET /items/<int:item_id>", "lookup.task")
            requests_.append({
                "server": (server.name, server.kind.name),
                "ours": sorted(span.name for span in in_trace),
                "workflow_under_server": parent_id(workflow) == server.context.span_id,
                "task_under_workflow": parent_id(inner) == workflow.context.span_id,
                "customers": [
                    span.attributes.get(wire.CUSTOMER_IDENTIFIER) for span in (workflow, inner)
                ],
            })
        print(json.dumps({
            "statuses": statuses,
            "traces": len({span.context.trace_id for span in [*servers, *spans]}),
            "requests": requests_,
            "still_theirs": trace.get_tracer_provider() is provider,
        }))
        """,
    )

    one_request = {
        "server": ["GET /items/<int:item_id>", "SERVER"],
        "ours": ["GET /items/<int:item_id>", "lookup.task"],
        "workflow_under_server": True,
        "task_under_workflow": True,
        "customers": ["user_7", "user_7"],
    }
    assert result == {
        "statuses": [200, 200],
        "traces": 2,
        "requests": [one_request, one_request],
        "still_theirs": True,
    }
    assert "Overriding of current TracerProvider" not in stderr


def test_under_the_applications_own_flask_instrumentation_each_request_ends_one_workflow(
    tmp_path,
):
    result, stderr = _run(
        tmp_path,
        FLASK_APP,
        THEIR_OPENTELEMETRY,
        """
        app = create_app()
        Respan(app)
        FlaskInstrumentor().instrument_app(app)

        @app.before_request
        def members_only():  # runs before the hook that starts our span
            if flask.request.path == "/members":
                return "members only", 403

        ours, statuses = serve(app, "/missing", "/members", "/boom", "/stream")
        servers, spans = finished(theirs, 4), finished(ours, 6)
        workflows = [span for span in spans if span.name != "lookup.task"]
        (stream,) = named(workflows, "GET /stream")
        print(json.dumps({
            "statuses": statuses,
            "workflows": sorted(span.name for span in workflows),
            "recorded_statuses": {span.name: span.attributes.get("http.response.status_code")
                                  for span in workflows},
            "each_under_a_server_span": {parent_id(workflow) for workflow in workflows}
            == {server.context.span_id for server in servers},
            "errors": {span.name: [event.name for event in span.events]
                       for span in workflows if span.status.status_code.name == "ERROR"},
            "streamed_tasks_under_it": [parent_id(span) == stream.context.span_id
                                        for span in spans if span.name == "lookup.task"],
        }))
        """,
    )

    assert result == {
        "statuses": [404, 403, 500, 200],
        "workflows": ["GET /boom", "GET /members", "GET /missing", "GET /stream"],
        "recorded_statuses": {
            "GET /boom": 500, "GET /members": 403, "GET /missing": 404, "GET /stream": 200,
        },
        "each_under_a_server_span": True,
        "errors": {"GET /boom": ["exception"]},
        "streamed_tasks_under_it": [True, True],
    }


def test_under_the_applications_own_flask_instrumentation_nothing_stays_current(tmp_path):
    result, stderr = _run(
        tmp_path,
        FLASK_APP,
        THEIR_OPENTELEMETRY,
        """
        app = create_app()
        Respan(app)
        FlaskInstrumentor().instrument_app(app)
        ours = InMemorySpanExporter()
        Respan.client(app).tracer_provider.add_span_processor(SimpleSpanProcessor(ours))
        client = app.test_client()
        client.get("/items/3")
        b"".join(client.get("/stream").response)
        lookup(5)  # on the same thread, after the requests
        outside = ours.get_finished_spans()[-1]
        print(json.dumps({
            "current": trace.get_current_span().get_span_context().is_valid,
            "outside_parent": outside.parent is not None,
            "outside_workflow": outside.attributes.get(wire.WORKFLOW_NAME),
        }))
        """,
    )

    assert result == {"current": False, "outside_parent": False, "outside_workflow": None}


def test_with_sentry_tracing_on_each_flask_request_is_still_one_workflow_span(tmp_path):
    result, stderr = _run(
        tmp_path,
        """
        import sentry_sdk
        from sentry_sdk.transport import Transport
        sent = []
        class Nowhere(Transport):
            def capture_envelope(self, envelope):
                sent.extend(item.type for item in envelope.items)
        sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Nowhere,
                        traces_sample_rate=1.0)
        """,
        FLASK_APP,
        """
        app = create_app()
        Respan(app)
        ours, statuses = serve(app, "/items/3", "/items/4")
        spans = finished(ours, 4)
        wait_for(lambda: sent.count("transaction") >= 2)
        workflows = [span for span in spans if span.name != "lookup.task"]
        print(json.dumps({
            "statuses": statuses,
            "ours": sorted(span.name for span in spans),
            "traces": len({span.context.trace_id for span in workflows}),
            "sentry_transactions": sent.count("transaction"),
        }))
        """,
    )

    assert result == {
        "statuses": [200, 200],
        "ours": ["GET /items/<int:item_id>", "GET /items/<int:item_id>", "lookup.task",
                 "lookup.task"],
        "traces": 2,
        "sentry_transactions": 2,
    }
