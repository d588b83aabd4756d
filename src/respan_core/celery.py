"""Celery: the trace and the identity scope travel with each task message into the worker.

When a task is sent, the current trace context, attribute scope and workflow position go
into one message header, `respan`. In the worker the task runs inside a span named after the
task, whose parent is the sender's span, with the sender's scope restored, so LLM calls in the
task carry the request's customer and thread. The Django and Flask adapters connect this by
themselves; a plain Celery application calls `respan_core.celery.connect()` once.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping
from typing import Any

from celery import signals
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import client, scope, wire
from .entity import TASK, WORKFLOW, Entity

logger = logging.getLogger("respan_core")

HEADER = "respan"
MAX_VALUE_LENGTH = 1000  # longest identity, metadata or position value carried in the header
_propagator = TraceContextTextMapPropagator()
_running: dict[str, tuple[Entity, contextlib.ExitStack]] = {}
_client: client.Respan | None = None


def connect(respan: client.Respan | None = None) -> None:
    """Connect the hooks to Celery's signals; connecting twice changes nothing.

    Task spans go to `respan` (given here or in an earlier call), else to the active client.
    """
    global _client
    _client = respan or _client
    for signal, receiver in (
        (signals.before_task_publish, _on_publish),
        (signals.task_prerun, _on_prerun),
        (signals.task_failure, _on_failure),
        (signals.task_retry, _on_retry),
        (signals.task_postrun, _on_postrun),
        (signals.worker_process_shutdown, _on_shutdown),
        (signals.worker_shutdown, _on_shutdown),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"respan_core.{receiver.__name__}")


def _on_publish(headers: dict | None = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        carrier: dict[str, Any] = {}
        _propagator.inject(carrier)
        carrier["scope"] = _valid_scope(scope.resolved_scope())
        where = scope.current_position()
        if where is not None:
            carrier["position"] = [where.workflow_name, where.entity_path]
        headers[HEADER] = carrier
    except Exception:
        logger.debug("adding the trace to a task message failed", exc_info=True)


def _on_prerun(task_id: str, task: Any, **_: Any) -> None:
    try:
        request = task.request
        carrier = _header(request)
        stack = contextlib.ExitStack()
        if carrier is not None:
            parent: Context | None = _propagator.extract(
                {key: value for key, value in carrier.items() if isinstance(value, str)}
            )
            stack.enter_context(scope.replaced_scope(_valid_scope(carrier.get("scope"))))
            stack.enter_context(scope.position(_valid_position(carrier.get("position"))))
        elif request.is_eager:
            parent = None  # runs in the caller's own context, which already holds it all
        else:
            parent = Context()  # sent without our hooks: a trace of its own, nothing inherited
            stack.enter_context(scope.replaced_scope({}))
            stack.enter_context(scope.position(None))

        kind = TASK if scope.current_position() is not None else WORKFLOW
        entity = Entity(
            kind,
            task.name,
            parent=parent,
            attributes={
                "celery.task_id": task_id,
                "celery.task_name": task.name,
                "celery.retries": request.retries or 0,
            },
            respan=_respan(),
        )
        stack.enter_context(entity.activated())
        _running[task_id] = (entity, stack)
    except Exception:
        logger.debug("starting the span of task %s failed", task_id, exc_info=True)


def _on_failure(task_id: str, exception: BaseException, **_: Any) -> None:
    running = _running.get(task_id)
    if running is not None:
        running[0].fail(exception)


def _on_retry(request: Any, reason: Any, **_: Any) -> None:
    running = _running.get(getattr(request, "id", None) or "")
    if running is not None:
        running[0].span.add_event("celery.retry", {"reason": str(reason)[:1000]})


def _on_postrun(task_id: str, state: str | None = None, **_: Any) -> None:
    running = _running.pop(task_id, None)
    if running is None:
        return
    entity, stack = running
    try:
        # An eager task run with throw=True raises past the failure signal; Celery sends
        # this one from a `finally`, so the exception is still the one being handled.
        exception = sys.exc_info()[1]
        if exception is not None:
            entity.fail(exception)
        if state:
            entity.span.set_attribute("celery.state", state)
        stack.close()
    except Exception:
        logger.debug("leaving the context of task %s failed", task_id, exc_info=True)
    finally:
        entity.end()


def _on_shutdown(**_: Any) -> None:
    respan = _respan()
    if respan is not None:
        respan.flush(timeout=10.0)


def _respan() -> client.Respan | None:
    return _client or client.active()


def _header(request: Any) -> Mapping[str, Any] | None:
    carrier = getattr(request, HEADER, None)
    if carrier is None and isinstance(getattr(request, "headers", None), Mapping):
        carrier = request.headers.get(HEADER)
    if carrier is not None and not isinstance(carrier, Mapping):
        logger.debug("ignoring a %s header that is not a mapping", HEADER)
        return None
    return carrier


def _valid_scope(value: Any) -> dict[str, Any]:
    """The scope fields Respan knows, as capped strings (metadata values as spans show them)."""
    if not isinstance(value, Mapping):
        return {}
    valid: dict[str, Any] = {}
    for key, field in value.items():
        if key == "metadata" and isinstance(field, Mapping):
            valid[key] = {
                str(k)[:MAX_VALUE_LENGTH]: str(v)[:MAX_VALUE_LENGTH]
                for k, v in field.items()
                if v is not None
            }
        elif key in wire.SCOPE_KEYS and isinstance(field, str):
            valid[key] = field[:MAX_VALUE_LENGTH]
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
