"""Run the Django chat example for real: a gunicorn server, a prefork Celery worker, a user.

The demo and the end-to-end tests both drive the example through this module, the way its
users would: over HTTP, with a logged-in session, and a worker fed by a real broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
DJANGO_CHAT = HERE / "django_chat"
USERNAME = "ada"
PASSWORD = "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DjangoChatStack:
    """The example site with its worker, configured by `env` (merged over os.environ)."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHAT_DATA_DIR": str(data_dir),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(DJANGO_CHAT), os.environ.get("PYTHONPATH")])
            ),
            **env,
        }
        self.processes: list[subprocess.Popen] = []
        self.session = requests.Session()

    def manage(self, *arguments: str) -> None:
        subprocess.run(
            [sys.executable, str(DJANGO_CHAT / "manage.py"), *arguments],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> DjangoChatStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--no-input")
        self.user_pk = self._ensure_user()
        self._spawn(
            "web",
            [sys.executable, "-m", "gunicorn", "chatsite.wsgi", "--bind",
             f"127.0.0.1:{self.port}", "--workers", "2", "--chdir", str(DJANGO_CHAT)],
        )
        self._spawn(
            "worker",
            [sys.executable, "-m", "celery", "-A", "chatsite", "worker", "--pool", "prefork",
             "--concurrency", "2", "--loglevel", "warning", "--without-heartbeat",
             "--without-gossip", "--without-mingle"],
        )
        self._wait_for_web()

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.data_dir / f"{name}.log", "ab") as log:
            self.processes.append(
                subprocess.Popen(command, env=self.env, cwd=DJANGO_CHAT, stdout=log, stderr=log)
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
        response = self.session.post(
            f"{self.base_url}/login/",
            data={
                "username": USERNAME,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
            },
            allow_redirects=False,
        )
        if response.status_code != 302:
            raise RuntimeError(f"logging in failed with HTTP {response.status_code}")

    def chat(self, conversation_id: int, message: str) -> dict:
        response = self.session.post(
            f"{self.base_url}/chat/{conversation_id}/",
            json={"message": message},
            headers={"X-CSRFToken": self.session.cookies["csrftoken"]},
        )
        response.raise_for_status()
        return response.json()

    @property
    def session_key(self) -> str | None:
        return self.session.cookies.get("sessionid")

    def _ensure_user(self) -> str:
        """Create the example user if missing; return its primary key."""
        output = subprocess.run(
            [sys.executable, str(DJANGO_CHAT / "manage.py"), "shell", "-c",
             "from django.contrib.auth.models import User\n"
             f"user = User.objects.filter(username={USERNAME!r}).first() or "
             f"User.objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
             "print(user.pk)"],
            env=self.env, check=True, capture_output=True, text=True,
        ).stdout
        return output.split()[-1]

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
