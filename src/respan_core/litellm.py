"""LiteLLM tracing through openinference-instrumentation-litellm, without importing LiteLLM early.

LiteLLM takes a second or more to import; an application that never uses it should not pay
for it. The instrumentation is therefore attached when the application itself imports LiteLLM
(at once if it already has).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import wrapt

if TYPE_CHECKING:
    from .client import Respan

logger = logging.getLogger("respan_core")


def instrument_when_imported(client: Respan) -> None:
    def instrument(_module: object) -> None:
        try:
            from openinference.instrumentation.litellm import LiteLLMInstrumentor

            client.instrument(LiteLLMInstrumentor())
        except Exception:
            logger.warning("Respan could not instrument LiteLLM", exc_info=True)

    wrapt.register_post_import_hook(instrument, "litellm")
