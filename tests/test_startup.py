"""Starting an application with the adapters imports no LiteLLM and touches no network."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent

GUARD = textwrap.dedent(
    """
    import socket, sys
    connections = []
    real_connect = socket.socket.connect
    def connect(self, address):
        connections.append(address)
        return real_connect(self, address)
    socket.socket.connect = connect
    """
)


def _run(script):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ["PYTHONPATH"]])
           if os.environ.get("PYTHONPATH") else str(HERE)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", GUARD + textwrap.dedent(script)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_starting_django_imports_no_litellm_and_connects_nowhere():
    last_line = _run(
        """
        import os
        os.environ["DJANGO_SETTINGS_MODULE"] = "django_app.settings"
        import django
        django.setup()
        from django.test import Client
        Client().get("/hello/")
        print("litellm" in sys.modules, connections)
        """
    )
    assert last_line == "False []"


def test_starting_flask_imports_no_litellm_and_connects_nowhere(tmp_path):
    last_line = _run(
        f"""
        from flask import Flask
        from respan_flask import Respan
        app = Flask("startup")
        app.config["RESPAN_LOCAL_STORE"] = {str(tmp_path / "t.sqlite3")!r}
        Respan(app)
        app.get("/")(lambda: "ok")
        app.test_client().get("/")
        print("litellm" in sys.modules, connections)
        """
    )
    assert last_line == "False []"


def test_litellm_imported_later_is_traced_from_then_on(tmp_path):
    last_line = _run(
        f"""
        from flask import Flask
        from respan_flask import Respan
        app = Flask("startup")
        app.config["RESPAN_LOCAL_STORE"] = {str(tmp_path / "t.sqlite3")!r}
        Respan(app)
        import os
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import litellm
        print(type(getattr(litellm.completion, "__self__", None)).__name__)
        """
    )
    assert last_line == "LiteLLMInstrumentor"
