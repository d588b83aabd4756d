"""The Django middleware, in-process behind a real (wsgiref) HTTP server."""

import asyncio
import os
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils.crypto import salted_hmac  # noqa: E402
from django_app import views  # noqa: E402
from django_app.views import ViewFailed  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

from respan_core import wire  # noqa: E402
from respan_django import apps  # noqa: E402


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server():
    call_command("migrate", verbosity=0)
    httpd = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def exporter():
    memory = InMemorySpanExporter()
    apps.start()[1].tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter):
    exporter.clear()

    def finished():
        return exporter.get_finished_spans()

    return finished


@pytest.fixture(scope="module")
def user(server):
    return User.objects.create_user("grace", password="hopper-1906")


@pytest.fixture
def logged_in(server, user):
    """A requests session carrying the session cookie of a logged-in user."""
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    return session


def test_a_request_is_one_workflow_span_named_after_its_route(server, spans):
    response = requests.get(f"{server}/items/42/")

    assert response.text == "item 42"
    (span,) = spans()
    assert span.name == "GET /items/<int:pk>/"
    assert span.parent is None
    assert span.attributes[wire.SPAN_KIND] == "workflow"
    assert span.attributes[wire.WORKFLOW_NAME] == "GET /items/<int:pk>/"
    assert span.attributes["http.route"] == "/items/<int:pk>/"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes[wire.ENVIRONMENT] == "test"
    assert span.attributes["respan.metadata.service"] == "tests"


def test_a_handled_request_no_longer_holds_its_span(server, spans):
    # A Django request is freed by the garbage collector, not as it goes out of use (its lazy
    # user refers back to it): the span's objects must not wait for the collector with it.
    views.handled_requests.clear()

    response = requests.get(f"{server}/kept/")

    assert response.text == "kept"
    ((request, held_during_the_view),) = views.handled_requests
    assert held_during_the_view is True
    assert "_respan_span" not in vars(request)
    (span,) = spans()
    assert span.name == "GET /kept/"
    assert span.attributes["http.response.status_code"] == 200


def test_a_path_no_route_matches_names_the_span(server, spans):
    response = requests.get(f"{server}/nowhere/")

    assert response.status_code == 404
    (span,) = spans()
    assert span.name == "GET /nowhere/"
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code is not StatusCode.ERROR


def test_a_view_exception_marks_the_span_and_propagates_unchanged(server, spans):
    with pytest.raises(ViewFailed, match="the view failed"):
        Client(raise_request_exception=True).get("/boom/")

    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [event.attributes["exception.type"] for event in span.events] == [
        "django_app.views.ViewFailed"
    ]


def test_a_view_exception_served_over_http_is_a_500_error_span(server, spans):
    response = requests.get(f"{server}/boom/")

    assert response.status_code == 500
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500
    assert span.events[0].name == "exception"


def test_a_5xx_response_marks_the_span_as_an_error(server, spans):
    assert requests.get(f"{server}/unavailable/").status_code == 503

    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "HTTP 503"


def test_an_incoming_traceparent_is_honoured(server, spans):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    requests.get(f"{server}/hello/", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})

    (span,) = spans()
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent_id


def test_a_not_sampled_traceparent_does_not_switch_tracing_off(server, spans):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"}
    assert requests.get(f"{server}/hello/", headers=headers).ok

    (span,) = spans()
    assert format(span.context.trace_id, "032x") == trace_id


@pytest.mark.skipif(django.VERSION < (5, 0), reason="request.auser() came with Django 5.0")
def test_a_user_an_async_view_loads_with_auser_is_the_customer(server, spans, user):
    client = Client()
    client.force_login(user)
    async_client = AsyncClient()
    async_client.cookies = client.cookies

    response = asyncio.run(async_client.get("/async-me/"))

    assert response.content.decode() == str(user.pk)
    (span,) = spans()
    assert span.attributes[wire.CUSTOMER_IDENTIFIER] == str(user.pk)


def test_an_anonymous_request_gets_no_identity_and_no_cookie(server, spans):
    response = requests.get(f"{server}/hello/")

    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
    (span,) = spans()
    assert wire.CUSTOMER_IDENTIFIER not in span.attributes
    assert wire.THREAD_IDENTIFIER not in span.attributes


def test_the_logged_in_user_is_the_customer_and_the_session_digest_the_thread(
    server, spans, logged_in, user
):
    response = logged_in.get(f"{server}/me/")

    assert response.text == str(user.pk)
    session_key = logged_in.cookies["sessionid"]
    (span,) = spans()
    assert span.attributes[wire.CUSTOMER_IDENTIFIER] == str(user.pk)
    thread = span.attributes[wire.THREAD_IDENTIFIER]
    expected = salted_hmac("respan_django.thread_identifier", session_key).hexdigest()[:32]
    assert thread == expected
    assert session_key not in thread


def test_spans_inside_the_view_nest_under_the_request_and_share_its_thread(
    server, spans, logged_in
):
    logged_in.get(f"{server}/work/")

    task_span, workflow_span = spans()
    assert task_span.name == "inner_step.task"
    assert task_span.parent.span_id == workflow_span.context.span_id
    assert task_span.attributes[wire.WORKFLOW_NAME] == "GET /work/"
    assert task_span.attributes[wire.ENTITY_PATH] == "inner_step"
    thread = workflow_span.attributes[wire.THREAD_IDENTIFIER]
    assert task_span.attributes[wire.THREAD_IDENTIFIER] == thread


def test_a_user_the_view_never_loaded_is_not_loaded_for_the_trace(server, spans, logged_in):
    # /work/ never touches request.user: reporting the customer would cost the request a
    # session and a user query, so the spans go without it.
    logged_in.get(f"{server}/work/")

    for span in spans():
        assert wire.CUSTOMER_IDENTIFIER not in span.attributes


def test_a_streaming_response_span_ends_once_after_the_body(server, spans):
    response = requests.get(f"{server}/stream/")

    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    (span,) = spans()
    assert span.name == "GET /stream/"
    assert span.end_time >= views.streamed_at_ns[-1]


def test_spans_made_while_a_body_streams_nest_under_the_request_with_its_identity(
    server, spans, logged_in, user
):
    response = logged_in.get(f"{server}/stream-work/")

    assert response.text == "start\ndone\n"
    task_span, workflow_span = spans()
    assert task_span.name == "inner_step.task"
    assert task_span.parent.span_id == workflow_span.context.span_id
    assert task_span.attributes[wire.WORKFLOW_NAME] == "GET /stream-work/"
    assert task_span.attributes[wire.THREAD_IDENTIFIER] == (
        workflow_span.attributes[wire.THREAD_IDENTIFIER]
    )
    # Loaded by the body, not the view: still on the request span, which ends after it.
    assert task_span.attributes[wire.CUSTOMER_IDENTIFIER] == str(user.pk)
    assert workflow_span.attributes[wire.CUSTOMER_IDENTIFIER] == str(user.pk)
    assert workflow_span.end_time >= task_span.end_time


def test_the_global_tracer_provider_is_left_alone(server):
    assert trace.get_tracer_provider() is not apps.start()[1].tracer_provider


def test_starting_twice_reuses_the_first_client(server, spans):
    first = apps.start()
    django.apps.apps.get_app_config("respan_django").ready()

    assert apps.start() is first
    requests.get(f"{server}/hello/")
    assert len(spans()) == 1


def test_static_and_configured_paths_are_not_traced(server, spans):
    requests.get(f"{server}/static/app.css")
    requests.get(f"{server}/hello/")

    assert [span.name for span in spans()] == ["GET /hello/"]


@pytest.mark.parametrize("path", ["/hello/", "/work/"])
def test_a_view_that_touches_no_user_costs_no_query(server, spans, logged_in, user, path):
    client = Client()
    client.force_login(user)

    with CaptureQueriesContext(connection) as queries:
        client.get(path)

    assert len(queries) == 0
    assert spans()[-1].name == f"GET {path}"


def test_spans_from_gather_children_and_sync_to_async_nest_under_the_request(spans):
    response = asyncio.run(AsyncClient().get("/fan-out/"))

    assert response.content == b"[1, 2] done"
    finished = spans()
    (workflow,) = [s for s in finished if s.name == "GET /fan-out/"]
    children = sorted(s.name for s in finished if s.parent
                      and s.parent.span_id == workflow.context.span_id)
    assert children == ["async_step.task", "async_step.task", "inner_step.task"]


def test_a_file_response_span_ends_after_the_file_is_sent(server, spans):
    response = requests.get(f"{server}/download/")

    assert response.content == Path(views.__file__).read_bytes()
    (span,) = spans()
    assert span.name == "GET /download/"
    assert span.attributes["http.response.status_code"] == 200
