"""Finished spans wait in a bounded queue for a background thread that exports them in batches.

The application's threads only ever append to the queue: when the queue is full a span is
dropped and counted (a warning, at most one a minute, says how many), never waited for.
`force_flush` and `shutdown` return within their timeout whatever the exporter is doing.
The queue is per process: a forked child (a gunicorn, uWSGI or Celery worker) starts its own
thread the first time it ends a span, and never exports what its parent had queued.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger("respan_core")

DROP_WARNING_INTERVAL = 60.0


def _schedule_delay() -> float:
    try:
        return max(0.01, float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "5000")) / 1000)
    except ValueError:
        return 5.0


class ExportQueue(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float | None = None,
    ):
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.schedule_delay = schedule_delay if schedule_delay is not None else _schedule_delay()
        self.dropped = 0
        self.failed_exports = 0
        self._start_process()

    def _start_process(self) -> None:
        """State of this process's queue; a forked child starts it afresh."""
        self._pid = os.getpid()
        self._spans: deque[ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._exporting = 0  # spans taken from the queue and not yet exported
        self._flush_wanted = False
        self._stopping = False
        self._unreported_drops = 0
        self._last_drop_warning = 0.0
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._start_process()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="respan-export", daemon=True)
            self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._thread is None or self._pid != os.getpid():
            self._ensure_thread()
        with self._lock:
            if self._stopping:
                return
            queued = len(self._spans)
            if queued >= self.max_queue_size:
                self._drop()
                return
            self._spans.append(span)
            # Once, as a batch fills up: the thread checks for more before it waits again.
            if queued + 1 == self.max_batch_size:
                self._condition.notify()

    def _lock_for_this_process(self) -> threading.Condition:
        self._ensure_thread()
        return self._condition

    def _drop(self) -> None:
        self.dropped += 1
        self._unreported_drops += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL:
            logger.warning(
                "Respan's export queue is full (%d spans): dropped %d spans since the last "
                "warning; the trace endpoint is slower than the application makes spans",
                self.max_queue_size,
                self._unreported_drops,
            )
            self._unreported_drops = 0
            self._last_drop_warning = now

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(
                    lambda: self._stopping
                    or self._flush_wanted
                    or len(self._spans) >= self.max_batch_size,
                    timeout=self.schedule_delay,
                )
                if not self._spans:
                    self._flush_wanted = False
                    self._condition.notify_all()
                    if self._stopping:
                        return
                    continue
                size = min(self.max_batch_size, len(self._spans))
                batch = [self._spans.popleft() for _ in range(size)]
                self._exporting = len(batch)
            try:
                succeeded = self.exporter.export(batch) is not SpanExportResult.FAILURE
            except Exception:
                succeeded = False
                logger.warning("Respan could not export %d spans", len(batch), exc_info=True)
            if not succeeded:
                self.failed_exports += 1
            with self._condition:
                self._exporting = 0
                self._condition.notify_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what has ended; False if that did not finish within the timeout, or if a
        batch failed meanwhile."""
        deadline = time.monotonic() + timeout_millis / 1000
        failures = self.failed_exports
        with self._lock_for_this_process():
            self._flush_wanted = True
            self._condition.notify_all()
            done = self._condition.wait_for(
                lambda: not self._spans and not self._exporting,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        return done and self.failed_exports == failures

    def shutdown(self, timeout_millis: int = 30000) -> None:
        """Export what is queued within the timeout, then stop; later spans are ignored."""
        deadline = time.monotonic() + timeout_millis / 1000
        stop_at = getattr(self.exporter, "stop_at", None)
        if stop_at is not None:
            stop_at(deadline)  # no HTTP request or retry goes past the deadline
        self.force_flush(timeout_millis)
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self.exporter.shutdown()
