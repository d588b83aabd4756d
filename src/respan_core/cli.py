"""The `respan` console command.

    respan traces                 the latest traces in the local store, as trees
    respan traces --limit 3 --store /path/to/traces.sqlite3
    respan traces serve           the same store in the browser, on http://127.0.0.1:8777/
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import datetime
from typing import TextIO

from . import viewer, wire
from .local_store import NotATraceStore, StoredSpan, StoredTrace, default_path, recent_traces
from .viewer import DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="respan", description="Respan tracing tools")
    commands = parser.add_subparsers(dest="command", required=True)
    traces = commands.add_parser("traces", help="print the latest traces from the local store")
    traces.add_argument(
        "--store", default=None,
        help="the SQLite file (default: RESPAN_LOCAL_STORE, else ~/.respan/traces.sqlite3)",
    )
    traces.add_argument("--limit", type=int, default=5, help="how many traces (default: 5)")
    actions = traces.add_subparsers(dest="action")
    serve = actions.add_parser("serve", help="show the traces in the browser")
    serve.add_argument("--store", default=None, dest="serve_store", help="the SQLite file")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    arguments = parser.parse_args(argv)

    store = getattr(arguments, "serve_store", None) or arguments.store or default_path()
    if arguments.action == "serve":
        try:
            recent_traces(store, 1)
            server = viewer.serve(store, port=arguments.port)
        except (NotATraceStore, OSError) as error:
            print(f"respan: {error}", file=sys.stderr)
            return 1
        print(f"Traces from {store} on http://127.0.0.1:{server.server_address[1]}/ "
              "(Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        return 0
    try:
        found = recent_traces(store, arguments.limit)
    except NotATraceStore as error:
        print(f"respan: {error}", file=sys.stderr)
        return 1
    if not found:
        print(f"No traces in {store} yet.")
        return 0
    for stored in found:
        print_trace(stored, sys.stdout)
    return 0


def print_trace(stored: StoredTrace, out: TextIO) -> None:
    started = min(span.start_ns for span in stored.spans) / 1e9
    when = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
    out.write(f"trace {stored.trace_id}  {when}  ({len(stored.spans)} spans)\n")
    for index, root in enumerate(stored.roots):
        _print_span(root, "", index == len(stored.roots) - 1, out)
    out.write("\n")


def _print_span(span: StoredSpan, prefix: str, last: bool, out: TextIO) -> None:
    out.write(f"{prefix}{'└─ ' if last else '├─ '}{printable(describe(span))}\n")
    child_prefix = prefix + ("   " if last else "│  ")
    for index, child in enumerate(span.children):
        _print_span(child, child_prefix, index == len(span.children) - 1, out)


def printable(text: str) -> str:
    """The text with control characters (a terminal's escape sequences) shown escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def describe(span: StoredSpan) -> str:
    """One line for a span: name, kind, duration, model and tokens, identity, error."""
    attributes = span.attributes
    kind = attributes.get(wire.SPAN_KIND) or attributes.get("llm.request.type") or "span"
    parts = [span.name, f"[{kind}]", f"{span.duration_ms:.1f} ms"]

    model = attributes.get("gen_ai.request.model")
    if model:
        parts.append(f"model={model}")
    tokens = (attributes.get("gen_ai.usage.prompt_tokens"), attributes.get(
        "gen_ai.usage.completion_tokens"))
    if any(count is not None for count in tokens):
        parts.append(f"tokens={tokens[0] or 0}+{tokens[1] or 0}")
    status = attributes.get("http.response.status_code")
    if status is not None:
        parts.append(f"status={status}")

    customer = attributes.get(wire.CUSTOMER_IDENTIFIER)
    if customer:
        parts.append(f"customer={customer}")
    thread = attributes.get(wire.THREAD_IDENTIFIER)
    if thread:
        parts.append(f"thread={thread[:12]}")
    if span.is_error:
        parts.append(f"ERROR {span.status_message or ''}".rstrip())
    return "  ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
