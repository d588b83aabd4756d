"""The Flask extension, in-process behind a real (werkzeug) HTTP server."""

import hashlib
import hmac
import threading
import time

import pytest
import requests
from flask import Flask, Response, stream_with_context
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user, login_user
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from werkzeug.serving import make_server

from respan_core import task, wire
from respan_core.settings import SettingsError
from respan_flask import Respan
from respan_flask.identity import THREAD_KEY


class Handled(Exception):
    pass


class ViewFailed(Exception):
    pass


class User(UserMixin):
    def __init__(self, user_id):
        self.id = user_id


@task(name="inner_step")
def inner_step():
    return "done"


def create_app(tmp_path, name="shop", traced=True, **config):
    """An application factory, as Flask users write them."""
    app = Flask(name)
    app.config.update(
        SECRET_KEY="tests-only",
        RESPAN_LOCAL_STORE=str(tmp_path / f"{name}.sqlite3"),
        RESPAN_ENVIRONMENT=name,
        RESPAN_METADATA={"service": name},
        RESPAN_INSTRUMENT_LITELLM=False,
        RESPAN_INSTRUMENT_CELERY=False,
        **config,
    )
    login_manager = LoginManager(app)
    login_manager.user_loader(User)

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return f"item {item_id}"

    @app.get("/hello")
    def hello():
        return "hello"

    @app.post("/login/<user_id>")
    def log_in(user_id):
        login_user(User(user_id))
        return "ok"

    @app.get("/me")
    def me():
        return current_user.get_id() if current_user.is_authenticated else "anonymous"

    @app.get("/work")
    def work():
        return inner_step()

    @app.get("/stream")
    def stream():
        def chunks():
            yield "start\n"
            yield inner_step() + "\n"

        return Response(stream_with_context(chunks()))

    @app.get("/boom")
    def boom():
        raise ViewFailed("the view failed")

    @app.get("/handled")
    def handled():
        raise Handled("handled by the application")

    @app.errorhandler(Handled)
    def on_handled(error):
        return "the application's own answer", 418

    if traced:
        Respan(app)
    return app


class Site:
    """An app served on 127.0.0.1, with the spans its client exports."""

    def __init__(self, app):
        self.app = app
        self.exporter = InMemorySpanExporter()
        Respan.client(app).tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def spans(self, count):
        """The finished spans, once there are `count`: a request's span ends when the server
        has closed the body, which can be just after the client has read the response."""
        deadline = time.monotonic() + 5
        while len(self.exporter.get_finished_spans()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.exporter.get_finished_spans()

    def spans_once_ended(self, name):
        """The finished spans, once one is named `name`: spans that end before it (a step
        of a streamed body, say) may be all there is for a moment."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            spans = self.exporter.get_finished_spans()
            if any(span.name == name for span in spans):
                return spans
            time.sleep(0.01)
        return self.exporter.get_finished_spans()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _named(spans, *names):
    """The spans with these names, in that order (spans end in no fixed order)."""
    return [next(span for span in spans if span.name == name) for name in names]


@pytest.fixture
def site(tmp_path):
    served = Site(create_app(tmp_path))
    yield served
    served.close()


def test_a_request_is_one_workflow_span_named_after_its_url_rule(site):
    assert requests.get(f"{site.url}/items/42").text == "item 42"

    (span,) = site.spans(1)
    assert span.name == "GET /items/<int:item_id>"
    assert span.parent is None
    assert span.attributes[wire.SPAN_KIND] == "workflow"
    assert span.attributes["http.route"] == "/items/<int:item_id>"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes[wire.ENVIRONMENT] == "shop"
    assert span.attributes["respan.metadata.service"] == "shop"


def test_an_incoming_traceparent_is_honoured(site):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    requests.get(f"{site.url}/hello", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})

    (span,) = site.spans(1)
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent_id


def test_an_unhandled_exception_is_a_500_error_span_with_the_exception(site):
    response = requests.get(f"{site.url}/boom")

    assert response.status_code == 500
    (span,) = site.spans(1)
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].attributes["exception.type"].endswith("ViewFailed")


def test_the_exception_propagates_unchanged_where_flask_propagates_it(site):
    site.app.config["PROPAGATE_EXCEPTIONS"] = True

    with pytest.raises(ViewFailed, match="the view failed"):
        site.app.test_client().get("/boom")
    (span,) = site.spans(1)
    assert span.status.status_code is StatusCode.ERROR


def test_the_applications_error_handler_answers_as_without_the_extension(site):
    response = requests.get(f"{site.url}/handled")

    assert (response.status_code, response.text) == (418, "the application's own answer")
    (span,) = site.spans(1)
    assert span.attributes["http.response.status_code"] == 418
    assert span.status.status_code is not StatusCode.ERROR


def test_an_anonymous_visitor_gets_no_cookie_and_no_identity(site, tmp_path):
    untraced = create_app(tmp_path, "untraced", traced=False).test_client().get("/hello")

    response = requests.get(f"{site.url}/hello")

    assert "Set-Cookie" not in response.headers
    assert response.headers.get("Vary") == untraced.headers.get("Vary")
    (span,) = site.spans(1)
    assert wire.CUSTOMER_IDENTIFIER not in span.attributes
    assert wire.THREAD_IDENTIFIER not in span.attributes


def test_the_logged_in_user_is_the_customer_and_the_session_keeps_a_random_thread(site):
    browser = requests.Session()
    browser.post(f"{site.url}/login/7")
    first_cookie = browser.cookies["session"]
    assert browser.get(f"{site.url}/me").text == "7"
    browser.get(f"{site.url}/me")

    login, first, second = sorted(site.spans(3), key=lambda span: span.start_time)
    assert first.attributes[wire.CUSTOMER_IDENTIFIER] == "7"
    thread = first.attributes[wire.THREAD_IDENTIFIER]
    assert len(thread) == 32 and second.attributes[wire.THREAD_IDENTIFIER] == thread
    assert thread not in first_cookie


def test_a_user_the_request_never_loaded_is_not_loaded_for_the_trace(site):
    browser = requests.Session()
    browser.post(f"{site.url}/login/7")

    browser.get(f"{site.url}/work")

    task_span, workflow_span = _named(site.spans(3), "inner_step.task", "GET /work")
    assert task_span.parent.span_id == workflow_span.context.span_id
    assert wire.CUSTOMER_IDENTIFIER not in task_span.attributes
    assert task_span.attributes[wire.THREAD_IDENTIFIER] == (
        workflow_span.attributes[wire.THREAD_IDENTIFIER]
    )


def test_a_streamed_body_is_made_in_the_request_and_ends_its_span_once(site):
    browser = requests.Session()
    browser.post(f"{site.url}/login/7")

    assert browser.get(f"{site.url}/stream").text == "start\ndone\n"

    task_span, workflow_span = _named(site.spans(3), "inner_step.task", "GET /stream")
    assert task_span.parent.span_id == workflow_span.context.span_id
    assert task_span.attributes[wire.WORKFLOW_NAME] == "GET /stream"
    assert task_span.attributes[wire.THREAD_IDENTIFIER] == (
        workflow_span.attributes[wire.THREAD_IDENTIFIER]
    )
    assert workflow_span.end_time >= task_span.end_time
    assert len([s for s in site.spans(3) if s.name == "GET /stream"]) == 1


def test_a_stream_closed_early_ends_its_span(site):
    with requests.get(f"{site.url}/stream", stream=True) as response:
        next(response.iter_content(chunk_size=1))

    names = [span.name for span in site.spans_once_ended("GET /stream")]
    assert names.count("GET /stream") == 1
    assert names[-1] == "GET /stream"


def test_nothing_of_a_request_leaks_into_the_next_on_the_same_thread(tmp_path):
    app = create_app(tmp_path)
    exporter = InMemorySpanExporter()
    Respan.client(app).tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = app.test_client()

    client.post("/login/7")
    client.get("/me")
    list(app.test_client().get("/stream").response)
    inner_step()  # outside any request

    outside = exporter.get_finished_spans()[-1]
    assert outside.name == "inner_step.task"
    assert outside.parent is None
    assert wire.CUSTOMER_IDENTIFIER not in outside.attributes
    assert wire.WORKFLOW_NAME not in outside.attributes


def test_two_apps_from_one_factory_trace_to_their_own_clients(tmp_path):
    shop, admin = Site(create_app(tmp_path, "shop")), Site(create_app(tmp_path, "admin"))
    try:
        requests.get(f"{shop.url}/work")
        requests.get(f"{admin.url}/items/1")
    finally:
        shop.close()
        admin.close()

    assert Respan.client(shop.app) is not Respan.client(admin.app)
    assert [s.name for s in shop.spans(2)] == ["inner_step.task", "GET /work"]
    assert [s.name for s in admin.spans(1)] == ["GET /items/<int:item_id>"]
    assert {s.attributes[wire.ENVIRONMENT] for s in shop.spans(2)} == {"shop"}


def test_apps_with_the_same_configuration_share_one_client(tmp_path):
    first = create_app(tmp_path, "same")
    second = create_app(tmp_path, "same")

    assert Respan.client(first) is Respan.client(second)


def test_init_app_twice_adds_nothing_twice(site):
    Respan().init_app(site.app)

    requests.get(f"{site.url}/hello")
    assert len(site.spans(1)) == 1


def test_keyword_options_win_over_the_config(tmp_path):
    app = Flask("options")
    app.config.update(RESPAN_ENVIRONMENT="from-config", RESPAN_LOCAL_STORE=str(tmp_path / "o"))
    Respan(app, environment="from-option")

    assert app.extensions["respan"].settings.environment == "from-option"


def customer_from_header():
    from flask import request

    return request.headers.get("X-Customer")


def test_identity_callables_can_be_configured_by_dotted_path(tmp_path):
    site = Site(
        create_app(tmp_path, RESPAN_CUSTOMER_IDENTIFIER=f"{__name__}.customer_from_header")
    )
    try:
        requests.get(f"{site.url}/work", headers={"X-Customer": "c-42"})
    finally:
        site.close()

    for span in site.spans(2):
        assert span.attributes[wire.CUSTOMER_IDENTIFIER] == "c-42"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"RESPAN_ENVIRONMNET": "x"}, "app.config has an unknown key 'RESPAN_ENVIRONMNET'"),
        ({"RESPAN_METADATA": "service"}, "app.config['RESPAN_METADATA'] must be a dict"),
        ({"RESPAN_TRACE_CONTENT": "off"}, "app.config['RESPAN_TRACE_CONTENT'] must be True"),
        (
            {"RESPAN_THREAD_IDENTIFIER": "nowhere.thread"},
            "app.config['RESPAN_THREAD_IDENTIFIER'] names 'nowhere.thread', which cannot",
        ),
    ],
)
def test_a_bad_setting_fails_init_app_naming_the_key(config, message):
    app = Flask("bad")
    app.config.update(config)

    with pytest.raises(SettingsError) as error:
        Respan(app)
    assert message in str(error.value)


def test_the_thread_key_is_kept_inside_the_session_not_derived_from_the_cookie(site):
    browser = requests.Session()
    browser.post(f"{site.url}/login/7")
    browser.get(f"{site.url}/me")

    serializer = site.app.session_interface.get_signing_serializer(site.app)
    stored = serializer.loads(browser.cookies["session"])
    (me,) = _named(site.spans(2), "GET /me")
    assert stored[THREAD_KEY] == me.attributes[wire.THREAD_IDENTIFIER]


class ServerSideSession(SecureCookieSession):
    """A session with an id, the way server-side session extensions (Flask-Session) give one."""

    sid = "server-side-session-id-123"


class ServerSideSessionInterface(SecureCookieSessionInterface):
    session_class = ServerSideSession


def test_a_server_side_session_id_gives_a_keyed_digest_as_thread(tmp_path):
    app = create_app(tmp_path, "server_side")
    app.session_interface = ServerSideSessionInterface()
    site = Site(app)
    try:
        requests.get(f"{site.url}/hello")
    finally:
        site.close()

    (span,) = site.spans(1)
    expected = hmac.new(
        b"tests-only", b"respan_flask.thread:server-side-session-id-123", hashlib.sha256
    ).hexdigest()[:32]
    assert span.attributes[wire.THREAD_IDENTIFIER] == expected


def test_a_gateway_mode_without_an_api_key_fails_init_app(monkeypatch):
    monkeypatch.delenv("RESPAN_API_KEY", raising=False)
    app = Flask("gateway_without_key")
    app.config["RESPAN_MODE"] = "both"

    with pytest.raises(SettingsError) as error:
        Respan(app)
    assert "app.config['RESPAN_MODE'] is 'both'" in str(error.value)
    assert "app.config['RESPAN_API_KEY']" in str(error.value)


def test_static_files_and_skipped_paths_are_not_traced(tmp_path):
    site = Site(create_app(tmp_path, "skipping", RESPAN_SKIP_PATHS=["/hello", "/static/"]))
    try:
        requests.get(f"{site.url}/hello")
        requests.get(f"{site.url}/static/app.css")
        requests.get(f"{site.url}/items/3")
    finally:
        site.close()

    assert [span.name for span in site.spans(1)] == ["GET /items/<int:item_id>"]


def test_a_skip_path_must_be_a_list_of_absolute_paths():
    app = Flask("bad_skip")
    app.config["RESPAN_SKIP_PATHS"] = ["health"]

    with pytest.raises(SettingsError) as error:
        Respan(app)
    assert "app.config['RESPAN_SKIP_PATHS'] must be a list of path prefixes" in str(error.value)


def test_a_view_that_never_touches_the_session_adds_no_vary_cookie(tmp_path):
    app = Flask("no_vary")
    app.config.update(SECRET_KEY="tests-only", RESPAN_LOCAL_STORE=str(tmp_path / "v.sqlite3"),
                      RESPAN_INSTRUMENT_LITELLM=False)

    @app.get("/plain")
    def plain():
        return "plain"

    @app.post("/remember")
    def remember():
        from flask import session

        session["visits"] = 1
        return "ok"

    Respan(app)
    client = app.test_client()

    assert client.get("/plain").headers.get("Vary") is None  # a first visitor
    client.post("/remember")
    assert client.get("/plain").headers.get("Vary") is None  # a visitor with a session
