"""What the Django middleware and the Flask extension add to each request.

Each configuration runs in a process of its own: a one-view app driven by the framework's
test client (no network, so only the per-request work is measured), in rounds of 500 requests
that the configurations take in turn (see rounds.py); the median over the turns counts.
Spans go through each tool's batching to an exporter that discards them; sentry-sdk runs with
tracing on and a transport that sends nothing. "one bare span" is the smallest instrumentation
there is: a middleware (Django) or WSGI wrapper (Flask) that starts and ends one OpenTelemetry
SDK span per request, with no context, attributes or identity; it is measured the same way,
as what it adds to the bare app, so that both costs are paid in the same process under the
same conditions. With valgrind installed, the instructions and cache misses each adds per
request are counted too (see rounds.py).

    python benchmarks/request_cost.py

Targets: our added cost at most 1.5 times that of one bare span, and at most 0.25 of
opentelemetry-instrumentation-django's / -flask's added cost.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import rounds

REQUESTS = 500
TURNS = 40
CONFIGS = ("bare", "span", "respan", "opentelemetry", "sentry")


def _discarding_provider():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider, Discard


def _start_sentry() -> None:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    class Nowhere(Transport):
        def capture_envelope(self, envelope):
            pass

    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Nowhere, traces_sample_rate=1.0)


def django_client(config: str):
    import django
    from django.conf import settings

    middleware = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    apps = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
    if config == "respan":
        apps.append("respan_django")
        middleware.append("respan_django.middleware.RespanMiddleware")
    if config == "span":
        middleware.append(f"{__name__}.BareSpanMiddleware")
    settings.configure(
        SECRET_KEY="bench", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=apps,
        MIDDLEWARE=middleware,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        RESPAN={"INSTRUMENT_LITELLM": False, "INSTRUMENT_CELERY": False,
                "LOCAL_STORE": os.path.join(tempfile.mkdtemp(), "t.sqlite3")},
    )
    if config == "opentelemetry":
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(tracer_provider=_discarding_provider()[0])
    if config == "sentry":
        _start_sentry()
    django.setup()
    if config == "respan":
        _discard_respan_spans()
    from django.test import Client

    return Client()


class BareSpanMiddleware:
    """One SDK span per request, and nothing else."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.tracer = _discarding_provider()[0].get_tracer("bench")

    def __call__(self, request):
        span = self.tracer.start_span("GET /items/<int:item_id>")
        response = self.get_response(request)
        span.end()
        return response


def _discard_respan_spans() -> None:
    from respan_core import client

    respan = client.active()
    for queue in respan.export_queues:
        queue.exporter = _discarding_provider()[1]()


def flask_client(config: str):
    from flask import Flask

    app = Flask("bench")
    app.config.update(RESPAN_INSTRUMENT_LITELLM=False, RESPAN_INSTRUMENT_CELERY=False,
                      RESPAN_LOCAL_STORE=os.path.join(tempfile.mkdtemp(), "t.sqlite3"))
    app.get("/items/<int:item_id>")(lambda item_id: "item")
    if config == "respan":
        from respan_flask import Respan

        Respan(app)
        _discard_respan_spans()
    if config == "opentelemetry":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, tracer_provider=_discarding_provider()[0])
    if config == "sentry":
        _start_sentry()
    if config == "span":
        app.wsgi_app = _bare_span_wrapper(app.wsgi_app)
    return app.test_client()


def _bare_span_wrapper(wsgi_app):
    """One SDK span per request, and nothing else."""
    tracer = _discarding_provider()[0].get_tracer("bench")

    def wrapped(environ, start_response):
        span = tracer.start_span("GET /items/<int:item_id>")
        body = wsgi_app(environ, start_response)
        span.end()
        return body

    return wrapped


def item(request, item_id):
    from django.http import HttpResponse

    return HttpResponse("item")


def _urlpatterns():
    from django.urls import path

    return [path("items/<int:item_id>", item)]


def __getattr__(name):  # Django reads ROOT_URLCONF's urlpatterns lazily
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def serve(framework: str, config: str) -> None:
    """Set one configuration up, warm it up, then time rounds of requests on demand."""
    client = django_client(config) if framework == "django" else flask_client(config)
    for _ in range(300):
        client.get("/items/7")
    rounds.serve(lambda: client.get("/items/7"), REQUESTS)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
        return

    for framework in ("django", "flask"):
        configurations = {config: [framework, config] for config in CONFIGS}
        bare, added = rounds.added_costs(__file__, configurations, TURNS)
        print(f"\n{framework}: per request, median of {TURNS} turns of {REQUESTS} requests each")
        _report(bare, added, " us", ".1f")
        if shutil.which("valgrind"):
            for measure, figures in rounds.added_counts(__file__, configurations).items():
                print(f"{framework}: {measure} per request, counted by cachegrind")
                _report(*figures, "", ".0f")


def _report(bare: float, added: dict[str, float], unit: str, form: str) -> None:
    print(f"  bare app                         {bare:8{form}}{unit}")
    for config, cost in added.items():
        label = "one bare span" if config == "span" else config
        print(f"  + {label:30s} {cost:+8{form}}{unit}")
    print(f"  ours / one bare span             {added['respan'] / added['span']:8.2f}"
          "  (target <= 1.5)")
    ours_vs_otel = added["respan"] / added["opentelemetry"]
    print(f"  ours / opentelemetry             {ours_vs_otel:8.2f}  (target <= 0.25)")
    print(f"  ours / sentry                    {added['respan'] / added['sentry']:8.2f}")

if __name__ == "__main__":
    main()
