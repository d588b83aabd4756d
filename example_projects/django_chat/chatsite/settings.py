"""A small chat site: a login, a chat view that calls an LLM, a Celery task that calls it again.

Everything that differs between the demo, the tests and a real deployment comes from the
environment; with nothing set it runs on SQLite, a filesystem Celery broker, and Respan's
local trace store.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CHAT_DATA_DIR", BASE_DIR / ".data"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "chat",
    "respan_django",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "respan_django.middleware.RespanMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = "chatsite.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_REDIRECT_URL = "/health/"
USE_TZ = True

RESPAN = {
    # Without an API key, traces go to the local store: `respan traces` prints them.
    "API_KEY": os.environ.get("RESPAN_API_KEY"),
    "BASE_URL": os.environ.get("RESPAN_BASE_URL"),
    "LOCAL_STORE": os.environ.get("RESPAN_LOCAL_STORE"),
    "ENVIRONMENT": os.environ.get("CHAT_ENVIRONMENT", "development"),
    "METADATA": {"service": "chat-api"},
    "SERVICE_NAME": "chat-api",
    "SKIP_PATHS": ["/health/"],  # static and media files are skipped without saying
    # "tracing", "gateway" (LLM calls through the Respan gateway) or "both".
    "MODE": os.environ.get("RESPAN_MODE", "tracing"),
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _queue = DATA_DIR / "broker"
    _queue.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue),
        "data_folder_out": str(_queue),
        "control_folder": str(DATA_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
