"""A loopback stand-in for Respan's API: the trace ingest, which records every POST it receives,
and the gateway (the LLM stand-in's chat completions) under the same base URL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from loopback_llm import LLMRequestHandler


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def spans(self) -> list[Span]:
        payload = json.loads(self.body)
        return [
            Span.from_otlp(span)
            for resource_spans in payload.get("resourceSpans", [])
            for scope_spans in resource_spans.get("scopeSpans", [])
            for span in scope_spans.get("spans", [])
        ]


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    events: list[dict[str, Any]]
    links: list[tuple[str, str]]

    @classmethod
    def from_otlp(cls, span: dict[str, Any]) -> Span:
        return cls(
            name=span["name"],
            trace_id=span["traceId"],
            span_id=span["spanId"],
            parent_span_id=span.get("parentSpanId", ""),
            attributes={a["key"]: _value(a["value"]) for a in span.get("attributes", [])},
            status_code=span.get("status", {}).get("code", 0),
            events=span.get("events", []),
            links=[(link["traceId"], link["spanId"]) for link in span.get("links", [])],
        )


def _value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return value["boolValue"]
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", [])]
    return value


class _Handler(LLMRequestHandler):
    server: Ingest

    def do_POST(self) -> None:
        if not self.path.endswith("/v2/traces"):
            super().do_POST()  # the gateway
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.attempts += 1
            status, headers = self.server.answer(self.server.attempts)
            if status == 200:
                self.server.posts.append(Post(self.path, dict(self.headers), body))
        if status is None:  # accept the connection and never answer
            self.server.hung.wait()
            return
        answer = b'{"partialSuccess": {}}'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def healthy(attempt: int) -> tuple[int | None, dict[str, str]]:
    return 200, {}


class Ingest(ThreadingHTTPServer):
    """`answer(n)` decides the status of the n-th trace POST (None: never answer)."""

    daemon_threads = True

    def __init__(
        self, answer: Callable[[int], tuple[int | None, dict[str, str]]] = healthy
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.attempts = 0
        self.hung = threading.Event()
        self.posts: list[Post] = []
        self.requests: list[dict[str, Any]] = []  # gateway calls
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def spans(self) -> list[Span]:
        with self.lock:
            posts = list(self.posts)
        return [span for post in posts for span in post.spans()]

    def wait_for(
        self, condition: Callable[[list[Span]], bool], timeout: float = 60.0
    ) -> list[Span]:
        """Wait until `condition(spans)` holds; return the spans (raise on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if condition(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted(span.name for span in spans)
                raise AssertionError(f"timed out waiting for spans; received {names}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.hung.set()
        self.shutdown()
        self.server_close()
