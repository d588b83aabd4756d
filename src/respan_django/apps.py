from __future__ import annotations

from django.apps import AppConfig

from respan_core import Respan
from respan_core.settings import Settings, client_for

from .conf import load_settings

_started: tuple[Settings, Respan] | None = None


class RespanConfig(AppConfig):
    name = "respan_django"
    verbose_name = "Respan"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        start()


def start() -> tuple[Settings, Respan]:
    """Start tracing from `settings.RESPAN`, once per process; later calls return the same."""
    global _started
    if _started is None:
        settings = load_settings()
        _started = (settings, client_for(settings))
    return _started
