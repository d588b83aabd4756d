"""The demo: a chat example traced end to end, with no account and no network.

It starts the site under gunicorn and a prefork Celery worker (filesystem broker unless
CELERY_BROKER_URL says otherwise), and, unless OPENAI_API_KEY is set, an OpenAI-compatible
stand-in on 127.0.0.1. It logs in, chats a little, waits for the work, and prints the traces
from Respan's local store: request -> LLM, and request -> Celery task -> LLM, in one trace.

    python example_projects/demo.py                      # the Django example
    python example_projects/demo.py --framework flask    # the Flask example
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from chat_stack import HERE, STACKS
from loopback_llm import LoopbackLLM

from respan_core.cli import print_trace
from respan_core.local_store import recent_traces

DEMO_DIR = HERE / ".demo"
MESSAGES = ["What is a trace?", "And what is a span?"]
SPANS_PER_CHAT = 4  # request workflow, its LLM call, the Celery task, the task's LLM call


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a traced chat example end to end.")
    parser.add_argument("--framework", choices=sorted(STACKS), default="django")
    framework = parser.parse_args().framework

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    store = str(DEMO_DIR / "traces.sqlite3")
    env = {"RESPAN_LOCAL_STORE": store}
    if not os.environ.get("OPENAI_API_KEY"):
        llm = LoopbackLLM().start()
        env.update(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="sk-stand-in")
        print(f"No OPENAI_API_KEY: using the LLM stand-in at {llm.base_url}")

    stack = STACKS[framework](DEMO_DIR, env)
    stack.env.pop("RESPAN_API_KEY", None)
    print(f"Starting the {framework} chat site (gunicorn) and its Celery worker ...")
    stack.start()
    try:
        stack.log_in()
        for message in MESSAGES:
            answer = stack.chat(1, message)
            print(f"  POST /chat/1/ {message!r} -> {answer['reply']!r}")
        complete = _wait_for_spans(store, len(MESSAGES) * SPANS_PER_CHAT)
    finally:
        stack.stop()

    print(f"\nThe latest traces in {store}:\n")
    for stored in recent_traces(store, limit=len(MESSAGES)):
        print_trace(stored, sys.stdout)
    respan_command = Path(sys.executable).with_name("respan")
    print(f"See them again with: {respan_command} traces --store {store}")
    return 0 if complete else 1


def _wait_for_spans(store: str, expected: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(len(t.spans) for t in recent_traces(store, limit=100)) >= expected:
            return True
        time.sleep(0.5)
    print(f"Not every span arrived within {timeout} s; see the logs in {DEMO_DIR}")
    return False


if __name__ == "__main__":
    sys.exit(main())
