"""Settings of the small Django site the middleware tests run in-process."""

import os
import tempfile

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "respan_django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "respan_django.middleware.RespanMiddleware",
]
ROOT_URLCONF = "django_app.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.mkdtemp(prefix="respan-django-tests-"), "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
RESPAN = {
    "LOCAL_STORE": os.path.join(tempfile.mkdtemp(prefix="respan-django-tests-"), "t.sqlite3"),
    "ENVIRONMENT": "test",
    "METADATA": {"service": "tests"},
    # The LiteLLM instrumentor is one per process; the seed example tests own it.
    "INSTRUMENT_LITELLM": False,
}
