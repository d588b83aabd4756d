"""`settings.RESPAN`, read and checked once at startup.

    RESPAN = {
        "API_KEY": os.environ.get("RESPAN_API_KEY"),   # none: traces go to the local store
        "ENVIRONMENT": "production",
        "METADATA": {"service": "chat-api"},
    }

Every key is optional. A key this package does not know, or a value of the wrong type, raises
`ImproperlyConfigured` naming the key, so a typo cannot silently turn tracing off.
`CUSTOMER_IDENTIFIER` and `THREAD_IDENTIFIER` take a callable `f(request) -> str | None`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from respan_core.settings import Settings, parse_settings

from .identity import authenticated_user_id, session_thread_id


def load_settings() -> Settings:
    """Read `settings.RESPAN`; raise ImproperlyConfigured naming the first bad key."""
    raw = getattr(django_settings, "RESPAN", {})
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"settings.RESPAN must be a dict, got {type(raw).__name__}. "
            'Write RESPAN = {"API_KEY": ..., "ENVIRONMENT": ...}.'
        )
    settings = parse_settings(
        raw, container="settings.RESPAN", prefix="", error=ImproperlyConfigured
    )
    return dataclasses.replace(
        settings,
        customer_identifier=settings.customer_identifier or authenticated_user_id,
        thread_identifier=settings.thread_identifier or session_thread_id,
        skip_paths=settings.skip_paths if settings.skip_paths is not None else _static_paths(),
    )


def _static_paths() -> tuple[str, ...]:
    """Static and media files are not traced unless SKIP_PATHS says otherwise."""
    urls = [getattr(django_settings, name, None) for name in ("STATIC_URL", "MEDIA_URL")]
    return tuple(
        "/" + url.lstrip("/") for url in urls if isinstance(url, str) and url.strip("/")
    )
