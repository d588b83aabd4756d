import os
import sys
import uuid
from pathlib import Path

import pytest

# LiteLLM downloads a model cost map when imported unless told to use the one it ships.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

# The Celery tests share one Redis database; a queue of this run's own keeps concurrent runs
# (and messages left by an interrupted one) apart.
os.environ.setdefault("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ.setdefault("TEST_CELERY_QUEUE", f"respan-tests-{uuid.uuid4().hex[:12]}")

# Export finished spans every 200 ms instead of every 5 s, here and in every process the tests
# start, so tests wait less for what the workers export.
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "example_projects"))

from loopback_llm import LoopbackLLM  # noqa: E402
from support.ingest import Ingest  # noqa: E402


@pytest.fixture(scope="session")
def llm():
    server = LoopbackLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ingest():
    server = Ingest()
    yield server
    server.stop()


@pytest.fixture
def traced_litellm():
    """LiteLLM's instrumentor, uninstrumented before and after (it is one per process)."""
    from openinference.instrumentation.litellm import LiteLLMInstrumentor

    instrumentor = LiteLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture(scope="module")
def publisher(ingest):
    """The Celery sending side's client, hooks connected: its spans go to the ingest."""
    import respan_core.celery
    from respan_core import Respan

    client = Respan(api_key="celery-publisher-key", base_url=ingest.base_url)
    respan_core.celery.connect(client)
    yield client
    client.shutdown()
