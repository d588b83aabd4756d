import os
import sys
from pathlib import Path

import pytest

# LiteLLM downloads a model cost map when imported unless told to use the one it ships.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

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
