"""Send one test trace to each destination a client exports to, and say how it went.

Behind `python manage.py respan check` and `flask respan check`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from . import wire
from .client import Respan
from .export import RespanExporter
from .local_store import LocalStoreExporter


@dataclass
class Outcome:
    destination: str
    ok: bool
    answer: str


def send_test_trace(respan: Respan) -> list[Outcome]:
    """Export one `respan check` workflow span straight to every destination, now."""
    tracer = TracerProvider(resource=respan.tracer_provider.resource).get_tracer("respan_core")
    span = tracer.start_span(
        "respan check",
        attributes={wire.SPAN_KIND: "workflow", wire.ENTITY_NAME: "respan check",
                    wire.ENTITY_PATH: "", wire.WORKFLOW_NAME: "respan check"},
    )
    span.end()

    outcomes = []
    for queue in respan.export_queues:
        exporter = queue.exporter
        if isinstance(exporter, RespanExporter):
            status = exporter.post_once([span])
            answer = f"HTTP {status}" if status is not None else "no answer"
            ok = status is not None and status < 300
            outcomes.append(Outcome(f"Respan at {exporter.endpoint}", ok, answer))
        elif isinstance(exporter, LocalStoreExporter):
            ok = exporter.export([span]) is SpanExportResult.SUCCESS
            answer = "written" if ok else "could not write to it (see the warning above)"
            outcomes.append(Outcome(f"the local store {exporter.path}", ok, answer))
        else:
            ok = exporter.export([span]) is SpanExportResult.SUCCESS
            outcomes.append(Outcome("the OTLP endpoint", ok, "accepted" if ok else "failed"))
    return outcomes


def report(outcomes: list[Outcome]) -> tuple[str, int]:
    """The lines to print and the exit status (non-zero when a destination failed)."""
    if not outcomes:
        return "No destination: the gateway setup exports no traces.", 0
    lines = [f"{'ok' if o.ok else 'FAILED'}: a test trace to {o.destination}: {o.answer}"
             for o in outcomes]
    return "\n".join(lines), 0 if all(o.ok for o in outcomes) else 1
