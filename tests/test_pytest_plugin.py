"""The `respan_spans` fixture, as an application's own tests use it (the plugin is loaded by
the package's pytest11 entry point, as in any project that installs it)."""

import os

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")

import django

django.setup()

from celery_app import add  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from flask import Flask  # noqa: E402

from respan_core import propagate_attributes, workflow  # noqa: E402
from respan_flask import Respan  # noqa: E402


def test_the_django_test_client_request_is_found_with_its_identity(respan_spans):
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("plugin-user")
    client = Client()
    client.force_login(user)

    client.get("/me/")

    request = respan_spans.workflow("GET /me/")
    respan_spans.assert_identity(request, customer=str(user.pk))
    assert respan_spans.in_trace(request) == [request]


def test_the_flask_test_client_request_and_the_spans_under_it(respan_spans, tmp_path):
    app = Flask("plugin")
    app.config.update(RESPAN_LOCAL_STORE=str(tmp_path / "t.sqlite3"),
                      RESPAN_INSTRUMENT_LITELLM=False)

    @workflow(name="inner")
    def inner():
        return "ok"

    app.get("/x")(lambda: inner())
    Respan(app)

    app.test_client().get("/x")

    request = respan_spans.workflow("GET /x")
    assert [span.name for span in respan_spans.under(request)] == ["inner.workflow"]


def test_an_eager_celery_task_is_captured_in_the_callers_trace(respan_spans):
    @workflow(name="caller")
    def caller():
        with propagate_attributes(customer_identifier="c-plugin"):
            return add.apply(args=(2, 2)).get()

    assert caller() == 4

    root = respan_spans.workflow("caller")
    (task_span,) = respan_spans.under(root)
    assert task_span.name == "celery_app.add.task"
    assert task_span.attributes["respan.customer_params.customer_identifier"] == "c-plugin"


def test_a_missing_workflow_says_which_there_are(respan_spans):
    workflow(name="present")(lambda: None)()

    with pytest.raises(AssertionError, match="expected one workflow 'absent', found 0 among"):
        respan_spans.workflow("absent")


def test_captured_spans_are_not_exported(respan_spans, ingest):
    from respan_core import Respan as Client

    client = Client(api_key="rk-test", base_url=ingest.base_url)
    try:
        with client.tracer.start_as_current_span("in-a-test"):
            pass
        assert client.flush(timeout=5)
    finally:
        client.shutdown()

    assert [span.name for span in respan_spans.spans] == ["in-a-test"]
    # (Clients of earlier tests may still retry posts to this port: look for ours only.)
    assert [span.name for span in ingest.spans() if span.name == "in-a-test"] == []
