"""settings.RESPAN is checked at startup: a bad key or value names itself and the fix."""

import os
import subprocess
import sys
import textwrap

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")

import django

django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import override_settings  # noqa: E402

from respan_django.conf import load_settings  # noqa: E402
from respan_django.identity import authenticated_user_id, session_thread_id  # noqa: E402


def customer_from_header(request):
    return request.headers.get("X-Customer")


@pytest.mark.parametrize(
    "respan, message",
    [
        ({"API_KEYS": "k"}, "unknown key 'API_KEYS'"),
        ({"ENVIRONMENT": 3}, "settings.RESPAN['ENVIRONMENT'] must be a string"),
        ({"METADATA": ["service"]}, "settings.RESPAN['METADATA'] must be a dict"),
        ({"TRACE_CONTENT": "no"}, "settings.RESPAN['TRACE_CONTENT'] must be True or False"),
        ({"CUSTOMER_IDENTIFIER": 5}, "settings.RESPAN['CUSTOMER_IDENTIFIER'] must be a callable"),
        (
            {"THREAD_IDENTIFIER": "no_such_module.thread"},
            "settings.RESPAN['THREAD_IDENTIFIER'] names 'no_such_module.thread', which cannot",
        ),
        (["API_KEY"], "settings.RESPAN must be a dict, got list"),
        ({"METADATA": {1: "one"}}, "settings.RESPAN['METADATA'] must be a dict such as"),
        ({"BASE_URL": "not a url"}, "settings.RESPAN['BASE_URL'] must be a URL string"),
        ({"LOCAL_STORE": "/tmp"}, "settings.RESPAN['LOCAL_STORE'] must be a file path, and"),
    ],
)
def test_a_bad_setting_is_named_in_the_error(respan, message):
    with override_settings(RESPAN=respan), pytest.raises(ImproperlyConfigured) as error:
        load_settings()
    assert message in str(error.value)


def test_identity_callables_are_taken_as_objects_or_dotted_paths():
    with override_settings(
        RESPAN={
            "CUSTOMER_IDENTIFIER": f"{__name__}.customer_from_header",
            "THREAD_IDENTIFIER": customer_from_header,
        }
    ):
        loaded = load_settings()
    assert loaded.customer_identifier is customer_from_header
    assert loaded.thread_identifier is customer_from_header


def test_defaults_without_a_respan_setting():
    with override_settings(RESPAN={}):
        loaded = load_settings()
    assert loaded.api_key is None
    assert loaded.customer_identifier is authenticated_user_id
    assert loaded.thread_identifier is session_thread_id
    assert loaded.metadata == {}


def test_a_bad_setting_stops_django_at_startup(tmp_path):
    (tmp_path / "bad_settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "x"
            INSTALLED_APPS = ["respan_django"]
            RESPAN = {"ENVIRONMNET": "production"}
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "bad_settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: settings.RESPAN has an unknown key 'ENVIRONMNET'" in result.stderr


def test_an_unknown_mode_is_named_in_the_error():
    with override_settings(RESPAN={"MODE": "proxy"}):
        with pytest.raises(ImproperlyConfigured) as error:
            load_settings()
    assert "settings.RESPAN['MODE'] must be one of" in str(error.value)


def test_a_gateway_mode_without_an_api_key_names_both_settings(monkeypatch):
    monkeypatch.delenv("RESPAN_API_KEY", raising=False)
    with override_settings(RESPAN={"MODE": "gateway"}):
        with pytest.raises(ImproperlyConfigured) as error:
            load_settings()
    message = str(error.value)
    assert "settings.RESPAN['MODE'] is 'gateway'" in message
    assert "set settings.RESPAN['API_KEY'] or the RESPAN_API_KEY variable" in message
