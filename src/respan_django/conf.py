"""`settings.RESPAN`, read and checked once at startup.

    RESPAN = {
        "API_KEY": os.environ.get("RESPAN_API_KEY"),   # none: traces go to the local store
        "ENVIRONMENT": "production",
        "METADATA": {"service": "chat-api"},
    }

Every key is optional. A key this package does not know, or a value of the wrong type, raises
`ImproperlyConfigured` naming the key, so a typo cannot silently turn tracing off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .identity import authenticated_user_id, session_thread_id

Resolver = Callable[[Any], str | None]


@dataclass(frozen=True)
class RespanSettings:
    api_key: str | None = None
    base_url: str | None = None
    environment: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    customer_identifier: Resolver = authenticated_user_id
    thread_identifier: Resolver = session_thread_id
    local_store: str | None = None
    trace_content: bool | None = None
    service_name: str | None = None
    instrument_litellm: bool = True
    instrument_celery: bool = True


# setting name -> (field, accepted types, what to write instead)
_KEYS: dict[str, tuple[str, tuple[type, ...], str]] = {
    "API_KEY": ("api_key", (str,), "a string, or leave it out to use RESPAN_API_KEY"),
    "BASE_URL": ("base_url", (str,), 'a URL string such as "https://api.respan.ai/api"'),
    "ENVIRONMENT": ("environment", (str,), 'a string such as "production"'),
    "METADATA": ("metadata", (Mapping,), 'a dict such as {"service": "chat-api"}'),
    "CUSTOMER_IDENTIFIER": (
        "customer_identifier",
        (str,),
        "a callable f(request) -> str | None, or its dotted path",
    ),
    "THREAD_IDENTIFIER": (
        "thread_identifier",
        (str,),
        "a callable f(request) -> str | None, or its dotted path",
    ),
    "LOCAL_STORE": ("local_store", (str,), "a file path string"),
    "TRACE_CONTENT": ("trace_content", (bool,), "True or False"),
    "SERVICE_NAME": ("service_name", (str,), 'a string such as "chat-api"'),
    "INSTRUMENT_LITELLM": ("instrument_litellm", (bool,), "True or False"),
    "INSTRUMENT_CELERY": ("instrument_celery", (bool,), "True or False"),
}
_RESOLVERS = {"CUSTOMER_IDENTIFIER", "THREAD_IDENTIFIER"}


def load_settings() -> RespanSettings:
    """Read `settings.RESPAN`; raise ImproperlyConfigured naming the first bad key."""
    raw = getattr(django_settings, "RESPAN", {})
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"settings.RESPAN must be a dict, got {type(raw).__name__}. "
            'Write RESPAN = {"API_KEY": ..., "ENVIRONMENT": ...}.'
        )

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise ImproperlyConfigured(
                f"settings.RESPAN has an unknown key {key!r}. Known keys: {known}."
            )
        name, types, expected = _KEYS[key]
        if value is None:
            continue
        if key in _RESOLVERS:
            values[name] = _resolver(key, value, expected)
        elif not isinstance(value, types):
            raise ImproperlyConfigured(
                f"settings.RESPAN[{key!r}] must be {expected}, got {type(value).__name__}."
            )
        else:
            values[name] = dict(value) if key == "METADATA" else value
    return RespanSettings(**values)


def _resolver(key: str, value: Any, expected: str) -> Resolver:
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as error:
            raise ImproperlyConfigured(
                f"settings.RESPAN[{key!r}] names {value!r}, which cannot be imported: {error}. "
                f"It must be {expected}."
            ) from error
    if not callable(value):
        raise ImproperlyConfigured(
            f"settings.RESPAN[{key!r}] must be {expected}, got {type(value).__name__}."
        )
    return value
