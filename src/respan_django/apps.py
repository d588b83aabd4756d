from __future__ import annotations

import importlib.util
import logging

from django.apps import AppConfig

import respan_core

from .conf import RespanSettings, load_settings

logger = logging.getLogger("respan_django")

_started: tuple[RespanSettings, respan_core.Respan] | None = None


class RespanConfig(AppConfig):
    name = "respan_django"
    verbose_name = "Respan"

    def ready(self) -> None:
        start()


def start() -> tuple[RespanSettings, respan_core.Respan]:
    """Start tracing from `settings.RESPAN`, once per process; later calls return the same."""
    global _started
    if _started is not None:
        return _started

    settings = load_settings()
    client = respan_core.Respan(
        api_key=settings.api_key,
        base_url=settings.base_url,
        metadata=settings.metadata,
        environment=settings.environment,
        local_store=settings.local_store,
        trace_content=settings.trace_content,
        service_name=settings.service_name,
    )
    if settings.instrument_litellm:
        client.instrument_litellm()
    if settings.instrument_celery and importlib.util.find_spec("celery") is not None:
        from respan_core import celery as respan_celery

        respan_celery.connect(client)
    _started = (settings, client)
    return _started
