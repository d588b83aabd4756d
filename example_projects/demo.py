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
from respan_core.viewer import DEFAULT_PORT

VIEWER_ADDRESS = f"http://127.0.0.1:{DEFAULT_PORT}/"

DEMO_DIR = HERE / ".demo"
MESSAGES = ["What is a trace?", "And what is a span?"]
SPANS_PER_CHAT = 4  # request workflow, its LLM call, the Celery task, the task's LLM call


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a traced chat example end to end.")
    parser.add_argument("--framework", choices=sorted(STACKS), default="django")
    parser.add_argument("--data-dir", type=Path, default=DEMO_DIR, help="emptied first")
    arguments = parser.parse_args()
    framework, data_dir = arguments.framework, arguments.data_dir

    shutil.rmtree(data_dir, ignore_errors=True)
    store = str(data_dir / "traces.sqlite3")
    env = {"RESPAN_LOCAL_STORE": store}
    if not os.environ.get("OPENAI_API_KEY"):
        llm = LoopbackLLM().start()
        env.update(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="sk-stand-in")
        print(f"No OPENAI_API_KEY: using the LLM stand-in at {llm.base_url}")

    stack = STACKS[framework](data_dir, env)
    stack.env.pop("RESPAN_API_KEY", None)
    print(f"Starting the {framework} chat site (gunicorn) and its Celery worker ...")
    stack.start()
    try:
        stack.log_in()
        for message in MESSAGES:
            answer = stack.chat(1, message)
            print(f"  POST /chat/1/ {message!r} -> {answer['reply']!r}")
        complete = _wait_for_spans(store, len(MESSAGES) * SPANS_PER_CHAT, data_dir)
    finally:
        stack.stop()

    print(f"\nThe latest traces in {store}:\n")
    for stored in recent_traces(store, limit=len(MESSAGES)):
        print_trace(stored, sys.stdout)
    respan_command = Path(sys.executable).with_name("respan")
    print(f"See them again with: {respan_command} traces --store {store}")
    print(f"In the browser: {respan_command} traces serve --store {store}")
    print(f"   then open {VIEWER_ADDRESS}")
    return 0 if complete else 1


def _wait_for_spans(store: str, expected: int, data_dir: Path, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(len(t.spans) for t in recent_traces(store, limit=100)) >= expected:
            return True
        time.sleep(0.5)
    print(f"Not every span arrived within {timeout} s; see the logs in {data_dir}")
    return False


if __name__ == "__main__":
    sys.exit(main())
