"""Respan tracing for Python applications, free of any web framework.

    from respan_core import Respan, workflow, task, propagate_attributes
    from openinference.instrumentation.litellm import LiteLLMInstrumentor

    respan = Respan(instrumentations=[LiteLLMInstrumentor()])
"""

from .client import Respan, flush
from .decorators import task, workflow
from .scope import propagate_attributes

__all__ = ["Respan", "flush", "propagate_attributes", "task", "workflow"]
