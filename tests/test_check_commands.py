"""`manage.py respan check`, `flask respan check` and the Django system checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.ingest import Ingest

EXAMPLES = Path(__file__).resolve().parent.parent / "example_projects"


def _run(command, cwd, env):
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(env)
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=120)


COMMANDS = {
    "django": ([sys.executable, "manage.py", "respan", "check"], EXAMPLES / "django_chat"),
    "flask": ([sys.executable, "-m", "flask", "--app", "wsgi", "respan", "check"],
              EXAMPLES / "flask_chat"),
}


@pytest.mark.parametrize("framework", sorted(COMMANDS))
def test_check_sends_a_test_trace_to_respan_and_prints_the_answer(framework, tmp_path):
    ingest = Ingest()
    try:
        command, cwd = COMMANDS[framework]
        result = _run(command, cwd, {"RESPAN_API_KEY": "check-key",
                                     "RESPAN_BASE_URL": ingest.base_url,
                                     "CHAT_DATA_DIR": str(tmp_path)})
    finally:
        ingest.stop()

    assert result.returncode == 0, result.stderr
    assert f"ok: a test trace to Respan at {ingest.base_url}/v2/traces: HTTP 200" in result.stdout
    assert [span.name for span in ingest.spans()] == ["respan check"]


@pytest.mark.parametrize("framework", sorted(COMMANDS))
def test_check_fails_when_respan_refuses_the_key(framework, tmp_path):
    ingest = Ingest(lambda n: (401, {}))
    try:
        command, cwd = COMMANDS[framework]
        result = _run(command, cwd, {"RESPAN_API_KEY": "wrong-key",
                                     "RESPAN_BASE_URL": ingest.base_url,
                                     "CHAT_DATA_DIR": str(tmp_path)})
    finally:
        ingest.stop()

    assert result.returncode != 0
    assert "FAILED: a test trace to Respan at" in result.stdout + result.stderr
    assert "HTTP 401" in result.stdout + result.stderr


def test_check_without_a_key_writes_to_the_local_store(tmp_path):
    command, cwd = COMMANDS["django"]
    store = tmp_path / "traces.sqlite3"
    result = _run(command, cwd, {"RESPAN_API_KEY": "", "RESPAN_LOCAL_STORE": str(store),
                                 "CHAT_DATA_DIR": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert f"ok: a test trace to the local store {store}: written" in result.stdout
    assert store.exists()


def test_check_with_a_local_store_it_cannot_write_says_so_without_a_traceback(tmp_path):
    command, cwd = COMMANDS["django"]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    store = blocked / "traces.sqlite3"  # under a file: no directory can be made there
    result = _run(command, cwd, {"RESPAN_API_KEY": "", "RESPAN_LOCAL_STORE": str(store),
                                 "CHAT_DATA_DIR": str(tmp_path)})

    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"FAILED: a test trace to the local store {store}: could not write" in output
    assert "set LOCAL_STORE (or RESPAN_LOCAL_STORE)" in output
    assert "Traceback" not in output


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")


def _check_ids(**overrides):
    import django

    django.setup()
    from django.core.checks import run_checks
    from django.test import override_settings

    with override_settings(**overrides):
        return sorted(message.id for message in run_checks() if message.id.startswith("respan"))


def test_a_missing_middleware_is_an_error():
    assert _check_ids(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]) == [
        "respan_django.E001", "respan_django.W001",
    ]


def test_the_middleware_before_authentication_is_an_error():
    middleware = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "respan_django.middleware.RespanMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    assert "respan_django.E002" in _check_ids(MIDDLEWARE=middleware)


def test_no_api_key_with_debug_off_warns_that_traces_stay_local():
    assert _check_ids() == ["respan_django.W001"]
    assert _check_ids(DEBUG=True) == []
