"""Celery: the trace and the identity scope travel with each task message into the worker.

When a task is sent, the current trace context, attribute scope and workflow position go
into one message header, `respan`. In the worker the task runs inside a span named after the
task, whose parent is the sender's span, with the sender's scope restored, so LLM calls in the
task carry the request's customer and thread. The Django and Flask adapters connect this by
themselves; a plain Celery application calls `respan_core.celery.connect()` once.

The span is opened around the function Celery builds to run a task (its "tracer", from
`celery.app.trace.build_tracer`), as sentry-sdk does, rather than in the task_prerun and
task_postrun signals: so it encloses everything Celery does for the task (other receivers of
those signals, the task's own handlers, storing its result), and Celery does not dispatch two
signals per task to us, which is as much as a fifth of what the hooks cost. The task's own
function is wrapped as well, to make the span current again should another library's hook
have made its own span current in between. Only the rare events come through signals: a
failure, a retry, a task lost with its process.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from celery import signals
from celery._state import _get_active_apps
from celery.app import trace as celery_trace
from celery.exceptions import Retry, TaskRevokedError
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import DEFAULT_TRACE_STATE, Link, SpanContext, TraceFlags, TraceState

from . import client, scope, wire
from .entity import TASK, WORKFLOW, Entity, span_context_in
from .span import span_context

logger = logging.getLogger("respan_core")

HEADER = "respan"
MAX_VALUE_LENGTH = 1000  # longest identity, metadata or position value carried in the header
MAX_METADATA_KEYS = 64
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_FLAGS = {f"{flags:02x}": TraceFlags(flags) for flags in range(256)}  # by traceparent field
_FLAGS_TEXT = {flags: text for text, flags in _FLAGS.items()}
_PUBLISHED_BY = MappingProxyType({"respan.link": "published_by"})
_received: OrderedDict[str, tuple[str, Mapping[str, Any] | None, int]] = OrderedDict()
_MAX_RECEIVED = 10_000
_client: client.Respan | None = None


def connect(respan: client.Respan | None = None) -> None:
    """Connect the hooks: to Celery's signals, and around each task's run (see above);
    connecting twice changes nothing.

    Task spans go to `respan` (given here or in an earlier call), else to the active client.
    """
    global _client
    _client = respan or _client
    for signal, receiver in (
        (signals.before_task_publish, _on_publish),
        (signals.task_received, _on_received),
        (signals.task_failure, _on_failure),
        (signals.task_internal_error, _on_failure),  # a task Celery could not run at all
        (signals.task_retry, _on_retry),
        (signals.task_revoked, _on_revoked),
        (signals.worker_process_shutdown, _on_shutdown),
        (signals.worker_shutdown, _on_shutdown),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"respan_core.{receiver.__name__}")
    _trace_task_runs()


def _trace_task_runs() -> None:
    """Make every tracer Celery builds from now on run its task inside the task's span, and
    every tracer already built (in a worker that connects once it has started)."""
    # The worker's consumer imports build_tracer by name: once imported, it needs it wrapped too.
    modules = [celery_trace, sys.modules.get("celery.worker.consumer.consumer")]
    for module in modules:
        if module is not None and not getattr(module.build_tracer, "respan", False):
            module.build_tracer = _tracing_builder(module.build_tracer)
    for app in _get_active_apps():
        if app.finalized:  # else it has built no tracer yet
            for task in app.tasks.values():
                if task.__trace__ is not None:
                    task.__trace__ = _traced(task, task.__trace__)


def _tracing_builder(build_tracer: Any) -> Any:
    def build_traced_tracer(name: str, task: Any, *args: Any, **kwargs: Any) -> Any:
        _keep_span_current_in_run(task)  # before the tracer takes the task's function
        return _traced(task, build_tracer(name, task, *args, **kwargs))

    build_traced_tracer.respan = True  # type: ignore[attr-defined]
    return build_traced_tracer


def _traced(task: Any, tracer: Any) -> Any:
    """`tracer`, which runs `task` (in a worker, or in `apply()`), running it in its span."""
    if getattr(tracer, "respan", False):
        return tracer
    name = task.name

    def traced(task_id: str, args: Any, kwargs: Any, request: dict | None = None) -> Any:
        run = _start_run(task, task_id, name, request or {})
        if run is None:
            return tracer(task_id, args, kwargs, request)
        try:
            outcome = tracer(task_id, args, kwargs, request)
        except BaseException as exception:  # an eager task's (throw=True), or SystemExit
            run.end(exception=exception)
            raise
        run.end(outcome=outcome)
        return outcome

    traced.respan = True  # type: ignore[attr-defined]
    return traced


def _keep_span_current_in_run(task: Any) -> None:
    """Make the task's span current again inside the task's function if another library's
    task_prerun receiver (opentelemetry-instrumentation-celery's) made a span of its own
    current meanwhile: what the task does belongs under the task's span."""
    run = task.run
    if getattr(run, "respan", False):
        return

    @functools.wraps(run)
    def run_under_task_span(*args: Any, **kwargs: Any) -> Any:
        current = _current_run.get()
        if current is None or current.task is not task or current.body_started:
            return run(*args, **kwargs)  # called as a function, not by its tracer
        current.body_started = True
        if current.entity.is_current():
            return run(*args, **kwargs)
        token = otel_context.attach(current.entity.context)
        try:
            return run(*args, **kwargs)
        finally:
            otel_context.detach(token)

    run_under_task_span.respan = True  # type: ignore[attr-defined]
    task.run = run_under_task_span


def _on_publish(headers: dict | None = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        carrier: dict[str, Any] = {}
        context = otel_context.get_current()
        # A SpanContext is the tuple its type declares: read without a property call each.
        trace_id, span_id, _, flags, state, is_valid = span_context_in(context)
        if is_valid:  # as W3C's traceparent and tracestate headers
            # Bytes' hex(): cheaper than formatting these padded hex fields.
            carrier["traceparent"] = (
                f"00-{trace_id.to_bytes(16, 'big').hex()}-{span_id.to_bytes(8, 'big').hex()}"
                f"-{_FLAGS_TEXT[flags]}"
            )
            if state is not DEFAULT_TRACE_STATE and state:
                carrier["tracestate"] = state.to_header()
        if scope.current_scope():  # else no scope to carry
            carried_scope = _valid_scope(scope.resolved_scope())
            if carried_scope:
                carrier["scope"] = carried_scope
        where = scope.current_position()
        if where is not None:
            carrier["position"] = [where.workflow_name, where.entity_path]
        headers[HEADER] = carrier
    except Exception:
        logger.debug("adding the trace to a task message failed", exc_info=True)


def _start_run(task: Any, task_id: str, name: str, request: dict) -> _Run | None:
    """Start the span of the task `request` describes and make it current (None if that
    failed: the task runs all the same)."""
    try:
        is_eager = request.get("is_eager", False)
        entity, carried_scope = _start_task_span(
            task_id, name, _header(request), is_eager, request.get("retries")
        )
        activation = entity.activated(carried_scope)
        activation.__enter__()
    except Exception:
        logger.debug("starting the span of task %s failed", task_id, exc_info=True)
        return None
    return _Run(task, task_id, entity, activation, is_eager)


class _Run:
    """A task running in its span: the current one while it runs (the signals Celery sends
    meanwhile, of a failure or a retry, are about it)."""

    __slots__ = ("task", "task_id", "entity", "activation", "is_eager", "body_started", "token")

    def __init__(self, task: Any, task_id: str, entity: Entity, activation: Any, is_eager: bool):
        self.task, self.task_id, self.entity, self.activation = task, task_id, entity, activation
        self.is_eager = is_eager
        self.body_started = False
        self.token = _current_run.set(self)

    def end(self, exception: BaseException | None = None, outcome: Any = None) -> None:
        """End the span once the tracer has returned `outcome` (Celery's trace_ok_t, whose
        `info` tells a retried or failed task) or raised `exception`."""
        entity = self.entity
        try:
            _current_run.reset(self.token)
            self.activation.__exit__(None, None, None)
            if exception is None:
                info = getattr(outcome, "info", None)
                state = getattr(info, "state", None) or ("FAILURE" if entity.failed else "SUCCESS")
            elif isinstance(exception, SystemExit) and not self.is_eager:
                return  # the pool terminates this process: its main process reports the task
            elif isinstance(exception, Retry):
                state = "RETRY"
            else:
                entity.fail(exception)
                state = "FAILURE"
            entity.end({"celery.state": state})
        except Exception:
            logger.debug("ending the span of task %s failed", self.task_id, exc_info=True)


_current_run: ContextVar[_Run | None] = ContextVar("respan_celery_run", default=None)


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
    if isinstance(tracestate, str):
        state = TraceState.from_header([tracestate])
    else:
        state = DEFAULT_TRACE_STATE
    return span_context(trace_id, span_id, True, _FLAGS[match[3]], state)


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
    run = _current_run.get()
    if run is not None and run.task_id == task_id:
        run.entity.fail(exception)
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
    run = _current_run.get()
    if run is not None and run.task_id == getattr(request, "id", None):
        run.entity.span.add_event("celery.retry", {"reason": str(reason)[:1000]})


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
    """Our header from a task's request: the message's headers, which a tracer is given (and
    apply() keeps under "headers"), or a request a worker received, which holds them."""
    headers = request if isinstance(request, dict) else getattr(request, "request_dict", None)
    if not isinstance(headers, dict):
        return None
    carrier = headers.get(HEADER)
    if carrier is None and isinstance(headers.get("headers"), dict):
        carrier = headers["headers"].get(HEADER)
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
