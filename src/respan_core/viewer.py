"""A trace viewer in the browser, served on 127.0.0.1 from the local store.

    respan traces serve --store path/to/traces.sqlite3      # then open http://127.0.0.1:8777/

The list of recent traces (filterable by customer and thread) links to a waterfall of each
trace; a click on a span shows its attributes, and an LLM span its model, messages and tokens.
Pages are rendered on the server, with no script and nothing loaded from elsewhere, and
everything shown is escaped: prompts are user input.
"""

from __future__ import annotations

import html
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import wire
from .local_store import StoredSpan, StoredTrace, load_trace, recent_traces

DEFAULT_PORT = 8777

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 24px; color: #1d2330; }
a { color: #2a55c4; text-decoration: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e4e7ee; }
th { background: #f4f6fa; font-weight: 600; }
.error { color: #b3261e; font-weight: 600; }
.muted { color: #6b7385; }
form { margin: 12px 0 18px; }
input { padding: 4px 8px; margin-right: 8px; }
.span { border-bottom: 1px solid #eef0f5; }
.span summary { display: grid; grid-template-columns: 38% 62%; align-items: center;
  cursor: pointer; padding: 4px 0; list-style: none; }
.span summary::-webkit-details-marker { display: none; }
.track { position: relative; height: 16px; background: #f4f6fa; }
.bar { position: absolute; top: 0; height: 16px; min-width: 2px; background: #5b8def; }
.bar.llm { background: #8e5bef; } .bar.failed { background: #d9534f; }
.details { padding: 8px 12px 12px; background: #fafbfd; }
.details td { vertical-align: top; font-family: ui-monospace, monospace; font-size: 12px;
  white-space: pre-wrap; word-break: break-word; }
.message { padding: 6px 8px; margin: 4px 0; background: #fff; border: 1px solid #e4e7ee;
  white-space: pre-wrap; }
"""


def serve(store: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server for the viewer (call `serve_forever()` on it); port 0 picks a free one."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.store = store  # type: ignore[attr-defined]
    return server


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        # Only pages asked for by this machine's own name: a web page that rebinds its DNS
        # name to 127.0.0.1 must not read the traces.
        port = self.server.server_address[1]
        if self.headers.get("Host") not in {f"127.0.0.1:{port}", f"localhost:{port}"}:
            self._send(403, _page("Forbidden", "<p>Open the viewer at 127.0.0.1.</p>"))
            return
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        store = self.server.store  # type: ignore[attr-defined]
        if url.path == "/":
            self._send(200, trace_list(store, query.get("customer"), query.get("thread")))
        elif url.path.startswith("/trace/"):
            stored = load_trace(store, url.path.removeprefix("/trace/"))
            if stored is None:
                self._send(404, _page("Not found", "<p>No such trace.</p>"))
            else:
                self._send(200, trace_page(stored))
        else:
            self._send(404, _page("Not found", "<p>Nothing here.</p>"))

    def _send(self, status: int, body: str) -> None:
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(payload)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _is_llm(span: StoredSpan) -> bool:
    return "llm.request.type" in span.attributes or "gen_ai.request.model" in span.attributes


def _tokens(span: StoredSpan) -> int:
    return sum(
        int(span.attributes.get(key) or 0)
        for key in ("gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens")
    )


def trace_list(store: str, customer: str | None = None, thread: str | None = None) -> str:
    rows = []
    for stored in recent_traces(store, limit=100, customer=customer, thread=thread):
        root = stored.roots[0] if stored.roots else stored.spans[0]
        errors = sum(span.is_error for span in stored.spans)
        started = datetime.fromtimestamp(stored.start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            "<tr class='trace'>"
            f"<td>{_e(started)}</td>"
            f"<td><a href='/trace/{_e(stored.trace_id)}'>{_e(root.name)}</a></td>"
            f"<td>{_e(stored.first(wire.CUSTOMER_IDENTIFIER) or '')}</td>"
            f"<td>{_e((stored.first(wire.THREAD_IDENTIFIER) or '')[:12])}</td>"
            f"<td>{(stored.end_ns - stored.start_ns) / 1e6:.1f} ms</td>"
            f"<td>{sum(_is_llm(span) for span in stored.spans)}</td>"
            f"<td>{sum(_tokens(span) for span in stored.spans)}</td>"
            f"<td class='{'error' if errors else 'muted'}'>{errors}</td>"
            "</tr>"
        )
    table = (
        "<table><tr><th>started</th><th>workflow</th><th>customer</th><th>thread</th>"
        "<th>duration</th><th>LLM calls</th><th>tokens</th><th>errors</th></tr>"
        + ("".join(rows) or "<tr><td colspan='8' class='muted'>No traces yet.</td></tr>")
        + "</table>"
    )
    form = (
        "<form method='get' action='/'>"
        f"<input name='customer' placeholder='customer' value='{_e(customer or '')}'>"
        f"<input name='thread' placeholder='thread' value='{_e(thread or '')}'>"
        "<button type='submit'>Filter</button> <a href='/'>all</a></form>"
    )
    return _page("Respan traces", f"<h1>Traces</h1><p class='muted'>{_e(store)}</p>{form}{table}")


def trace_page(stored: StoredTrace) -> str:
    start, total = stored.start_ns, max(1, stored.end_ns - stored.start_ns)
    bars = []

    def add(span: StoredSpan, depth: int) -> None:
        left = (span.start_ns - start) / total * 100
        width = max(0.2, (span.end_ns - span.start_ns) / total * 100)
        kind = "failed" if span.is_error else "llm" if _is_llm(span) else ""
        bars.append(
            "<details class='span'><summary>"
            f"<span style='padding-left:{depth * 16}px'>{_e(span.name)} "
            f"<span class='muted'>{span.duration_ms:.1f} ms</span></span>"
            f"<span class='track'><span class='bar {kind}' "
            f"style='left:{left:.3f}%;width:{width:.3f}%'></span></span>"
            f"</summary><div class='details'>{_span_details(span)}</div></details>"
        )
        for child in span.children:
            add(child, depth + 1)

    for root in stored.roots:
        add(root, 0)
    heading = (
        f"<p><a href='/'>&larr; all traces</a></p><h1>{_e(stored.roots[0].name)}</h1>"
        f"<p class='muted'>trace {_e(stored.trace_id)} &middot; {total / 1e6:.1f} ms &middot; "
        f"{len(stored.spans)} spans</p>"
    )
    return _page(f"Trace {stored.trace_id}", heading + "<div class='waterfall'>"
                 + "".join(bars) + "</div>")


def _span_details(span: StoredSpan) -> str:
    parts = []
    if _is_llm(span):
        attributes = span.attributes
        parts.append(
            f"<p><b>{_e(attributes.get('gen_ai.request.model', ''))}</b> &middot; "
            f"{_e(attributes.get('gen_ai.usage.prompt_tokens', 0))} prompt + "
            f"{_e(attributes.get('gen_ai.usage.completion_tokens', 0))} completion tokens</p>"
        )
        for prefix in ("gen_ai.prompt", "gen_ai.completion"):
            index = 0
            while f"{prefix}.{index}.content" in attributes:
                role = attributes.get(f"{prefix}.{index}.role", "")
                content = attributes[f"{prefix}.{index}.content"]
                parts.append(f"<div class='message'><b>{_e(role)}</b>: {_e(content)}</div>")
                index += 1
    if span.is_error:
        parts.append(f"<p class='error'>{_e(span.status_message or 'error')}</p>")
    rows = "".join(
        f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>"
        for key, value in sorted(span.attributes.items())
    )
    parts.append(f"<table>{rows}</table>")
    return "".join(parts)
