"""Celery: the trace and the identity scope travel with each task message into the worker.

When a task is sent, the current trace context, attribute scope and workflow position go
into one message header, `respan`. In the worker the task runs inside a span named after the
task, whose parent is the sender's span, with the sender's scope restored, so LLM calls in the
task carry the request's customer and thread. The Django and Flask adapters connect this by
themselves; a plain Celery application calls `respan_core.celery.connect()` once.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from celery import signals
from celery.exceptions import TaskRevokedError
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, TraceFlags, TraceState

from . import client, scope, wire
from .entity import TASK, WORKFLOW, Entity, span_context_in

logger = logging.getLogger("respan_core")

HEADER = "respan"
MAX_VALUE_LENGTH = 1000  # longest identity, metadata or position value carried in the header
MAX_METADATA_KEYS = 64
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_PUBLISHED_BY = MappingProxyType({"respan.link": "published_by"})
_running: dict[str, tuple[Entity, Any]] = {}
_received: OrderedDict[str, tuple[str, Mapping[str, Any] | None, int]] = OrderedDict()
_MAX_RECEIVED = 10_000
_client: client.Respan | None = None


def connect(respan: client.Respan | None = None) -> None:
    """Connect the hooks to Celery's signals; connecting twice changes nothing.

    Task spans go to `respan` (given here or in an earlier call), else to the active client.
    """
    global _client
    _client = respan or _client
    for signal, receiver in (
        (signals.before_task_publish, _on_publish),
        (signals.task_received, _on_received),
        (signals.task_prerun, _on_prerun),
        (signals.task_failure, _on_failure),
        (signals.task_retry, _on_retry),
        (signals.task_postrun, _on_postrun),
        (signals.task_revoked, _on_revoked),
        (signals.worker_process_shutdown, _on_shutdown),
        (signals.worker_shutdown, _on_shutdown),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"respan_core.{receiver.__name__}")


def _on_publish(headers: dict | None = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        carrier: dict[str, Any] = {}
        context = otel_context.get_current()
        # A SpanContext is the tuple its type declares: read without a property call each.
        trace_id, span_id, _, flags, state, is_valid = span_context_in(context)
        if is_valid:  # as W3C's traceparent and tracestate headers
            carrier["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
            if state:
                carrier["tracestate"] = state.to_header()
        carried_scope = _valid_scope(scope.resolved_scope())
        if carried_scope:
            carrier["scope"] = carried_scope
        where = scope.current_position()
        if where is not None:
            carrier["position"] = [where.workflow_name, where.entity_path]
        headers[HEADER] = carrier
    except Exception:
        logger.debug("adding the trace to a task message failed", exc_info=True)


def _on_prerun(task_id: str, task: Any, **_: Any) -> None:
    try:
        request = task.request
        entity, carried_scope = _start_task_span(
            task_id, task.name, _header(request), request.is_eager, request.retries
        )
        activation = entity.activated(carried_scope)
        activation.__enter__()
    except Exception:
        logger.debug("starting the span of task %s failed", task_id, exc_info=True)
        return
    _running[task_id] = (entity, activation)


def _start_task_span(
    task_id: str,
    name: str,
    carrier: Mapping[str, Any] | None,
    is_eager: bool,
    retries: int | None,
    start_time: int | None = None,
) -> tuple[Entity, Mapping[str, Any] | None]:
    """Start a task's span in the sender's trace, at the sender's position and with the
    sender's scope, which is returned for the task to run in (None: the current one)."""
    links: tuple[Link, ...] = ()
    carried_scope: Mapping[str, Any] | None = None
    outer = None
    if carrier is not None:
        sender = _sender(carrier)
        parent: Context | SpanContext | None = sender or Context()  # else a trace of its own
        if sender is not None:
            links = (Link(sender, _PUBLISHED_BY),)
        carried_scope = _valid_scope(carrier.get("scope"))
        outer = _valid_position(carrier.get("position"))
    elif is_eager:
        parent = None  # runs in the caller's own context, which already holds it all
        outer = scope.current_position()
    else:
        parent, carried_scope = Context(), {}  # sent without our hooks: nothing inherited

    attributes = {
        "celery.task_id": task_id,
        "celery.task_name": name,
        "celery.retries": retries or 0,
    }
    if carried_scope:
        attributes.update(scope.scope_attributes(carried_scope))
    # A task sent from no workflow (a beat schedule, a script) is a workflow of its own.
    return Entity(
        TASK if outer is not None else WORKFLOW,
        name,
        parent=parent,
        attributes=attributes,
        links=links,
        start_time=start_time,
        respan=_respan(),
        outer=outer,
    ), carried_scope


def _sender(carrier: Mapping[str, Any]) -> SpanContext | None:
    """The publishing span, from the header's W3C traceparent (and tracestate)."""
    traceparent = carrier.get("traceparent")
    match = _TRACEPARENT.fullmatch(traceparent) if isinstance(traceparent, str) else None
    if match is None:
        if traceparent is not None:
            logger.debug("ignoring a malformed traceparent in a task's %s header", HEADER)
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not (trace_id and span_id):  # all zeros: W3C's invalid ids
        return None
    tracestate = carrier.get("tracestate")
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(match[3], 16)),
        trace_state=TraceState.from_header([tracestate]) if isinstance(tracestate, str) else None,
    )


def _on_received(request: Any, **_: Any) -> None:
    # Remembered by the process that received the task, in case the process that runs it
    # dies with it (see _report_lost_task).
    try:
        _received[request.id] = (request.name, _header(request), time.time_ns())
        while len(_received) > _MAX_RECEIVED:
            _received.popitem(last=False)
    except Exception:
        logger.debug("remembering a received task failed", exc_info=True)


def _on_failure(task_id: str, exception: BaseException, **_: Any) -> None:
    running = _running.get(task_id)
    if running is not None:
        running[0].fail(exception)
    else:
        _report_lost_task(task_id, exception)


def _report_lost_task(task_id: str, exception: BaseException) -> None:
    """A task whose process was terminated or killed (a hard time limit, a revoke with
    terminate=True, a lost child) never ended its span: the worker's main process, which
    learns of it, ends one for it, as an error."""
    received = _received.pop(task_id, None)
    if received is None:
        return
    name, carrier, started = received
    try:
        entity, _ = _start_task_span(task_id, name, carrier, False, 0, started)
        entity.fail(exception)
        entity.end()
    except Exception:
        logger.debug("reporting the lost task %s failed", task_id, exc_info=True)


def _on_retry(request: Any, reason: Any, **_: Any) -> None:
    running = _running.get(getattr(request, "id", None) or "")
    if running is not None:
        running[0].span.add_event("celery.retry", {"reason": str(reason)[:1000]})


def _on_postrun(task_id: str, state: str | None = None, **_: Any) -> None:
    running = _running.pop(task_id, None)
    if running is None:
        return
    entity, activation = running
    # Celery sends this signal from a `finally`: an exception still being handled here
    # escaped the failure signal (an eager task run with throw=True), or is the pool
    # terminating this process (a hard time limit, a revoke with terminate=True).
    exception = sys.exc_info()[1]
    try:
        activation.__exit__(None, None, None)
    except Exception:
        logger.debug("leaving the context of task %s failed", task_id, exc_info=True)
    if isinstance(exception, SystemExit):
        return  # the worker's main process reports the task: see _report_lost_task
    if exception is not None:
        entity.fail(exception)
    if state:
        entity.span.set_attributes({"celery.state": state})
    entity.end()


def _on_revoked(request: Any, terminated: bool = False, signum: Any = None, **_: Any) -> None:
    if terminated:
        _report_lost_task(request.id, TaskRevokedError(f"terminated by signal {signum}"))
    else:
        _received.pop(request.id, None)


def _on_shutdown(**_: Any) -> None:
    respan = _respan()
    if respan is not None:
        respan.flush(timeout=10.0)


def _respan() -> client.Respan | None:
    return _client or client.active()


def _header(request: Any) -> Mapping[str, Any] | None:
    """Our header from a task's request (in the task) or from a worker's received request."""
    carrier = getattr(request, HEADER, None)
    for holder in ("headers", "request_dict"):
        if carrier is None and isinstance(getattr(request, holder, None), dict):
            carrier = getattr(request, holder).get(HEADER)
    if carrier is not None and not isinstance(carrier, dict):
        logger.debug("ignoring a %s header that is not a mapping", HEADER)
        return None
    return carrier


def _valid_scope(value: Any) -> dict[str, Any]:
    """The scope fields Respan knows, as capped strings (metadata values as spans show them)."""
    if not isinstance(value, dict):
        return {}
    valid: dict[str, Any] = {}
    for key, field in value.items():
        if key == "metadata" and isinstance(field, Mapping):
            items = [(k, v) for k, v in field.items() if v is not None][:MAX_METADATA_KEYS]
            valid[key] = {str(k)[:MAX_VALUE_LENGTH]: str(v)[:MAX_VALUE_LENGTH] for k, v in items}
        elif key == "prompt" and isinstance(field, Mapping):
            valid[key] = json.dumps(dict(field), default=str)[:MAX_VALUE_LENGTH]
        elif key in wire.SCOPE_KEYS and isinstance(field, (str, int, float)):
            valid[key] = str(field)[:MAX_VALUE_LENGTH]
    return valid


def _valid_position(value: Any) -> scope.Position | None:
    if isinstance(value, list) and len(value) == 2 and all(
        item is None or isinstance(item, str) for item in value
    ):
        workflow_name, entity_path = value
        return scope.Position(
            workflow_name[:MAX_VALUE_LENGTH] if workflow_name else None,
            (entity_path or "")[:MAX_VALUE_LENGTH],
        )
    return None
