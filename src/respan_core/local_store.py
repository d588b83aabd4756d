"""The embedded trace store: finished spans in a local SQLite file, no account needed.

Every process (web workers, Celery children) appends to the same file; `recent_traces` reads
it back for `respan traces`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from .wire import CUSTOMER_IDENTIFIER, THREAD_IDENTIFIER, to_respan_attributes

logger = logging.getLogger("respan_core")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    is_error INTEGER NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
"""


def default_path() -> str:
    return os.environ.get("RESPAN_LOCAL_STORE") or str(Path.home() / ".respan" / "traces.sqlite3")


class NotATraceStore(Exception):
    """The file is not a trace store this package wrote."""


def _connect(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Prompts are kept here: readable by the file's owner only.
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(_SCHEMA)
    return connection


class LocalStoreExporter(SpanExporter):
    """Writes finished spans, with Respan's attribute keys, to a SQLite file."""

    def __init__(self, path: str, trace_content: bool = True):
        self.path = path
        self._trace_content = trace_content
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._last_failure_warning: float | None = None

    def _connection_for_this_process(self) -> sqlite3.Connection:
        # A SQLite connection must not cross a fork: each process opens its own.
        if self._connection is None or self._pid != os.getpid():
            first = self._connection is None
            self._connection = _connect(self.path)
            self._pid = os.getpid()
            if first:
                logger.warning(
                    "Respan: no API key set, so traces are kept locally in %s. "
                    "See them with `respan traces --store %s`; set RESPAN_API_KEY to send "
                    "them to Respan.",
                    self.path,
                    self.path,
                )
        return self._connection

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [_row(span, self._trace_content) for span in spans]
        with self._lock:
            try:
                connection = self._connection_for_this_process()
                with connection:
                    connection.executemany(
                        "INSERT OR REPLACE INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
            except (OSError, sqlite3.Error) as error:
                self._warn_failure(error, len(spans))
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _warn_failure(self, error: Exception, count: int) -> None:
        now = time.monotonic()
        if self._last_failure_warning is None or now - self._last_failure_warning >= 60:
            self._last_failure_warning = now
            logger.warning(
                "Respan could not write %d spans to the local store %s (%s): set LOCAL_STORE "
                "(or RESPAN_LOCAL_STORE) to a file this process can write.",
                count,
                self.path,
                error,
            )

    def shutdown(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


def _row(span: ReadableSpan, trace_content: bool) -> tuple:
    parent = span.parent
    events = [
        {"name": event.name, "attributes": dict(event.attributes or {})} for event in span.events
    ]
    return (
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
        format(parent.span_id, "016x") if parent else None,
        span.name,
        span.start_time,
        span.end_time,
        int(span.status.status_code is StatusCode.ERROR),
        span.status.description,
        json.dumps(to_respan_attributes(span.attributes or {}, trace_content), default=str),
        json.dumps(events, default=str),
    )


@dataclass
class StoredSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    is_error: bool
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    children: list[StoredSpan] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class StoredTrace:
    trace_id: str
    roots: list[StoredSpan]
    spans: list[StoredSpan]

    @property
    def start_ns(self) -> int:
        return min(span.start_ns for span in self.spans)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans)

    def first(self, key: str) -> Any:
        """The first value of an attribute over the trace's spans, in start order."""
        return next((s.attributes[key] for s in self.spans if key in s.attributes), None)


def recent_traces(
    path: str, limit: int = 10, customer: str | None = None, thread: str | None = None
) -> list[StoredTrace]:
    """The `limit` most recently started traces, newest first, each as a tree of spans;
    only those with a span of that customer and thread when they are given."""
    if not Path(path).exists():
        return []
    connection = sqlite3.connect(path, timeout=30)
    try:
        conditions, parameters = [], []
        for key, value in ((CUSTOMER_IDENTIFIER, customer), (THREAD_IDENTIFIER, thread)):
            if value:
                conditions.append(  # a prefix will do: the viewer shows threads shortened
                    "trace_id IN (SELECT trace_id FROM spans WHERE "
                    "substr(json_extract(attributes, ?), 1, ?) = ?)"
                )
                parameters += [f'$."{key}"', len(value), value]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        trace_ids = [
            row[0]
            for row in connection.execute(
                f"SELECT trace_id FROM spans {where} GROUP BY trace_id "
                "ORDER BY MIN(start_ns) DESC LIMIT ?",
                (*parameters, limit),
            )
        ]
        return [_load_trace(connection, trace_id) for trace_id in trace_ids]
    except sqlite3.DatabaseError as error:
        if _is_empty(connection):
            return []
        raise NotATraceStore(f"{path} is not a Respan trace store ({error})") from error
    finally:
        connection.close()


def load_trace(path: str, trace_id: str) -> StoredTrace | None:
    """One trace by its id, or None."""
    if not Path(path).exists():
        return None
    connection = sqlite3.connect(path, timeout=30)
    try:
        stored = _load_trace(connection, trace_id)
        return stored if stored.spans else None
    except sqlite3.DatabaseError as error:
        raise NotATraceStore(f"{path} is not a Respan trace store ({error})") from error
    finally:
        connection.close()


def _is_empty(connection: sqlite3.Connection) -> bool:
    try:
        return connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    except sqlite3.DatabaseError:
        return False


def _load_trace(connection: sqlite3.Connection, trace_id: str) -> StoredTrace:
    spans = [
        StoredSpan(
            *row[:6],
            is_error=bool(row[6]),
            status_message=row[7],
            attributes=json.loads(row[8]),
            events=json.loads(row[9]),
        )
        for row in connection.execute(
            "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,)
        )
    ]
    by_id = {span.span_id: span for span in spans}
    roots = []
    for span in spans:
        parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
        (parent.children if parent else roots).append(span)
    return StoredTrace(trace_id, roots, spans)
