"""Run a chat example for real: a gunicorn server, a prefork Celery worker, a logged-in user.

The demo and the end-to-end tests drive the Django and the Flask example through this module
the way their users would: over HTTP, with a logged-in session, and a worker fed by a real
broker. Both examples answer the same URLs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
USERNAME = "ada"
PASSWORD = "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ChatStack:
    """An example site with its worker, configured by `env` (merged over os.environ)."""

    project_dir: Path
    wsgi_app: str
    celery_app: str
    settings_env: dict[str, str] = {}

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str],
        web_options: tuple[str, ...] = ("--workers", "2"),
        asgi: bool = False,
    ):
        self.data_dir = data_dir
        self.web_options = web_options
        self.asgi = asgi
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        self.env = {
            **inherited,
            **self.settings_env,
            "CHAT_DATA_DIR": str(data_dir),
            "CHAT_PASSWORD": PASSWORD,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(self.project_dir), os.environ.get("PYTHONPATH")])
            ),
            **env,
        }
        self.processes: list[subprocess.Popen] = []
        self.session = requests.Session()
        self.user_pk = ""

    def start(self) -> ChatStack:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.user_pk = self.prepare()
            if self.asgi:  # uvicorn, one process, the event loop serving every request
                web = [sys.executable, "-m", "uvicorn", self.asgi_app, "--host", "127.0.0.1",
                       "--port", str(self.port), "--log-level", "warning"]
            else:
                web = [sys.executable, "-m", "gunicorn", self.wsgi_app, "--bind",
                       f"127.0.0.1:{self.port}", "--chdir", str(self.project_dir),
                       *self.web_options]
            self._spawn("web", web)
            self._spawn(
                "worker",
                [sys.executable, "-m", "celery", "-A", self.celery_app, "worker", "--pool",
                 "prefork", "--concurrency", "2", "--loglevel", "warning",
                 "--without-heartbeat", "--without-gossip", "--without-mingle"],
            )
            self._wait_for_web()
        except BaseException:
            self.stop()
            raise
        return self

    def prepare(self) -> str:
        """Get the site ready to serve; return the example user's primary key."""
        raise NotImplementedError

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.data_dir / f"{name}.log", "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    command, env=self.env, cwd=self.project_dir, stdout=log, stderr=log
                )
            )

    def _wait_for_web(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[2]} exited; see the logs in {self.data_dir}")
            try:
                if requests.get(f"{self.base_url}/health/", timeout=10).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not answer within {timeout} s")

    def log_in(self) -> None:
        self.session.get(f"{self.base_url}/login/").raise_for_status()
        form = {"username": USERNAME, "password": PASSWORD, **self.login_form_extras()}
        response = self.session.post(f"{self.base_url}/login/", data=form, allow_redirects=False)
        if response.status_code != 302:
            raise RuntimeError(f"logging in failed with HTTP {response.status_code}")

    def login_form_extras(self) -> dict[str, str]:
        return {}

    def request_headers(self) -> dict[str, str]:
        return {}

    def chat(self, conversation_id: int, message: str, view: str = "") -> dict:
        """POST a message to /chat/<id>/ (or to /chat/<id>/<view>/, such as "async")."""
        response = self.post_message(conversation_id, message, view)
        return response.json()

    def post_message(self, conversation_id: int, message: str, view: str = "") -> Any:
        path = f"/chat/{conversation_id}/" + (f"{view}/" if view else "")
        response = self.session.post(
            f"{self.base_url}{path}",
            json={"message": message},
            headers=self.request_headers(),
        )
        response.raise_for_status()
        return response

    def stop(self) -> None:
        """Warm shutdown: each process flushes its spans before it exits."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


class DjangoChatStack(ChatStack):
    project_dir = HERE / "django_chat"
    wsgi_app = "chatsite.wsgi"
    asgi_app = "chatsite.asgi:application"
    celery_app = "chatsite"
    settings_env = {"DJANGO_SETTINGS_MODULE": "chatsite.settings"}
    session_cookie = "sessionid"

    def prepare(self) -> str:
        self._manage("migrate", "--no-input")
        output = self._manage(
            "shell", "-c",
            "from django.contrib.auth.models import User\n"
            f"user = User.objects.filter(username={USERNAME!r}).first() or "
            f"User.objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
            "print(user.pk)",
        )
        return output.split()[-1]

    def _manage(self, *arguments: str) -> str:
        return subprocess.run(
            [sys.executable, str(self.project_dir / "manage.py"), *arguments],
            env=self.env, check=True, capture_output=True, text=True,
        ).stdout

    def login_form_extras(self) -> dict[str, str]:
        return {"csrfmiddlewaretoken": self.session.cookies["csrftoken"]}

    def request_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.session.cookies["csrftoken"]}


class FlaskChatStack(ChatStack):
    project_dir = HERE / "flask_chat"
    wsgi_app = "wsgi:app"
    celery_app = "make_celery"
    session_cookie = "session"

    def prepare(self) -> str:
        return "1"  # the example keeps its one user in memory


STACKS = {"django": DjangoChatStack, "flask": FlaskChatStack}
