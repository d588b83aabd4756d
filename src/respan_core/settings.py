"""The settings the framework adapters share, checked in one place.

Django spells them `settings.RESPAN["API_KEY"]`, Flask `app.config["RESPAN_API_KEY"]`; both come
here, so a key means the same everywhere and a bad one gets the same clear error, naming the
key as the user wrote it, at startup.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .client import Respan
from .gateway import MODES, TRACING

Resolver = Callable[..., str | None]


class SettingsError(ValueError):
    """A setting has a value Respan cannot use; the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    api_key: str | None = None
    base_url: str | None = None
    environment: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    customer_identifier: Resolver | None = None
    thread_identifier: Resolver | None = None
    local_store: str | None = None
    trace_content: bool | None = None
    service_name: str | None = None
    instrument_litellm: bool = True
    instrument_celery: bool = True
    otlp_endpoint: str | None = None
    skip_paths: tuple[str, ...] | None = None
    mode: str = TRACING
    gateway_params: Mapping[str, Any] = field(default_factory=dict)


_RESOLVER = "a callable or its dotted path"
# field -> (accepted type, what to write instead)
_EXPECTED: dict[str, tuple[Any, str]] = {
    "api_key": (str, "a string, or leave it out to use the RESPAN_API_KEY variable"),
    "base_url": (str, 'a URL string such as "https://api.respan.ai/api"'),
    "environment": (str, 'a string such as "production"'),
    "metadata": (Mapping, 'a dict such as {"service": "chat-api"}'),
    "customer_identifier": (Callable, _RESOLVER),
    "thread_identifier": (Callable, _RESOLVER),
    "local_store": ((str, os.PathLike), "a file path"),
    "trace_content": (bool, "True or False"),
    "service_name": (str, 'a string such as "chat-api"'),
    "instrument_litellm": (bool, "True or False"),
    "instrument_celery": (bool, "True or False"),
    "otlp_endpoint": (str, 'an OTLP/HTTP URL such as "http://collector:4318"'),
    "skip_paths": ((list, tuple), 'a list of path prefixes such as ["/health/", "/static/"]'),
    "mode": (str, 'one of "tracing", "gateway", "both"'),
    "gateway_params": (Mapping, 'a dict such as {"fallback_models": ["gpt-4.1-mini"]}'),
}
assert set(_EXPECTED) == {f.name for f in fields(Settings)}


def parse_settings(
    raw: Mapping[str, Any],
    *,
    container: str,
    prefix: str,
    error: type[Exception] = SettingsError,
) -> Settings:
    """Check the user's settings; raise `error` naming the first bad key and its fix.

    `raw` holds the keys as written (`prefix` + the field name in capitals); `container` is
    where they were written, for the message (`settings.RESPAN`, `app.config`).
    """
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key[len(prefix):].lower() if key.startswith(prefix) else ""
        if name not in _EXPECTED:
            known = ", ".join(prefix + name.upper() for name in _EXPECTED)
            raise error(f"{container} has an unknown key {key!r}. Known keys: {known}.")
        if value is None:
            continue
        expected_type, expected = _EXPECTED[name]
        if expected is _RESOLVER and isinstance(value, str):
            value = _import(value, f"{container}[{key!r}]", error)
        if not isinstance(value, expected_type):
            raise error(
                f"{container}[{key!r}] must be {expected}, got {type(value).__name__}."
            )
        if name == "mode" and value not in MODES:
            raise error(f"{container}[{key!r}] must be {expected}, got {value!r}.")
        if name in ("base_url", "otlp_endpoint") and not value.startswith(("http://", "https://")):
            raise error(f"{container}[{key!r}] must be {expected}, got {value!r}.")
        if name == "local_store" and os.path.isdir(value):
            raise error(f"{container}[{key!r}] must be a file path, and {value!r} is a folder.")
        if name == "skip_paths":
            if not all(isinstance(path, str) and path.startswith("/") for path in value):
                raise error(f"{container}[{key!r}] must be {expected}, got {value!r}.")
            value = tuple(value)
        if name in ("metadata", "gateway_params"):
            if not all(isinstance(item, str) for item in value):
                raise error(f"{container}[{key!r}] must be {expected}, with string keys.")
            value = dict(value)
        elif name == "local_store":
            value = os.fspath(value)
        values[name] = value
    settings = Settings(**values)
    if settings.mode != TRACING and not (settings.api_key or os.environ.get("RESPAN_API_KEY")):
        raise error(
            f"{container}[{prefix + 'MODE'!r}] is {settings.mode!r}, which sends LLM calls "
            "through the Respan gateway with your Respan API key, and no key is set: set "
            f"{container}[{prefix + 'API_KEY'!r}] or the RESPAN_API_KEY variable."
        )
    return settings


def _import(path: str, where: str, error: type[Exception]) -> Any:
    module_name, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as problem:
        raise error(
            f"{where} names {path!r}, which cannot be imported ({problem}). "
            f"It must be {_RESOLVER}."
        ) from problem


_clients: dict[str, Respan] = {}


def client_for(settings: Settings) -> Respan:
    """The client for these settings: one per distinct configuration in a process.

    It traces LiteLLM once the application imports it, and carries traces into Celery
    workers when Celery is installed, as the settings ask.
    """
    key = json.dumps(
        [
            settings.api_key,
            settings.base_url,
            settings.environment,
            settings.metadata,
            settings.local_store,
            settings.trace_content,
            settings.service_name,
            settings.mode,
            settings.gateway_params,
            settings.otlp_endpoint,
        ],
        default=str,
        sort_keys=True,
    )
    if key in _clients:
        return _clients[key]

    client = Respan(
        api_key=settings.api_key,
        base_url=settings.base_url,
        metadata=settings.metadata,
        environment=settings.environment,
        local_store=settings.local_store,
        trace_content=settings.trace_content,
        service_name=settings.service_name,
        mode=settings.mode,
        gateway_params=settings.gateway_params,
        otlp_endpoint=settings.otlp_endpoint,
    )
    if settings.instrument_litellm:
        client.instrument_litellm()
    if settings.instrument_celery and importlib.util.find_spec("celery") is not None:
        from . import celery

        celery.connect(client)
    _clients[key] = client
    return client
