"""Django system checks: `manage.py check` says what would make tracing silently incomplete."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

MIDDLEWARE = "respan_django.middleware.RespanMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"


@register()
def check_middleware(app_configs: Any = None, **_: Any) -> list:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        return [
            Error(
                "RespanMiddleware is not in MIDDLEWARE, so requests are not traced.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE, after {AUTHENTICATION!r}.",
                id="respan_django.E001",
            )
        ]
    if AUTHENTICATION in middleware and middleware.index(MIDDLEWARE) < middleware.index(
        AUTHENTICATION
    ):
        return [
            Error(
                "RespanMiddleware comes before AuthenticationMiddleware, so it cannot see "
                "the request's user.",
                hint=f"Move {MIDDLEWARE!r} after {AUTHENTICATION!r} in MIDDLEWARE.",
                id="respan_django.E002",
            )
        ]
    return []


@register()
def check_destination(app_configs: Any = None, **_: Any) -> list:
    from .apps import start

    client = start()[1]
    if settings.DEBUG or client.local_store is None:
        return []
    return [
        Warning(
            "No Respan API key is set while DEBUG is off: traces go to the local store "
            f"{client.local_store}, not to Respan.",
            hint="Set RESPAN['API_KEY'] (or the RESPAN_API_KEY variable), or an OTLP_ENDPOINT.",
            id="respan_django.W001",
        )
    ]
