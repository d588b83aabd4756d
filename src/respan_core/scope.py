"""The attribute scope: who the work is for, and where in a workflow it runs.

`propagate_attributes` opens a scope (customer, thread, metadata, environment, ...) that every
span started inside it carries, LLM spans included. `ScopeProcessor` stamps it onto spans as
they start. Scopes live in the OpenTelemetry context, beside the current span, so they follow
threads' and coroutines' own contexts, and the Celery hooks carry them into workers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from . import wire

logger = logging.getLogger("respan_core")

# A scope value is a string, or a zero-argument callable evaluated when a span needs it (the
# web adapters use that for identity the application may establish during the request).
Value = str | Callable[[], str | None] | None

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Keys of the OpenTelemetry context: the current scope, always a read-only mapping (see
# `merge_scopes`), and the current position, set by the entity span that is current.
SCOPE_KEY = otel_context.create_key("respan.scope")
POSITION_KEY = otel_context.create_key("respan.position")


@dataclass
class Position:
    """Where a span runs: the enclosing workflow, and the path of the enclosing task if any.

    A workflow renames itself once its final name is known, hence not frozen.
    """

    workflow_name: str | None
    entity_path: str = ""


@contextlib.contextmanager
def propagate_attributes(
    *,
    customer_identifier: Value = None,
    customer_email: Value = None,
    customer_name: Value = None,
    thread_identifier: Value = None,
    session_identifier: Value = None,
    custom_identifier: Value = None,
    trace_group_identifier: Value = None,
    environment: Value = None,
    metadata: Mapping[str, Any] | None = None,
    prompt: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Stamp these attributes on every span started inside the `with` block.

    Nested scopes merge: an inner value wins, and `metadata` merges key by key. Values left as
    None are inherited from the enclosing scope (or the `Respan(...)` defaults).
    """
    fields = {key: value for key, value in locals().items() if value is not None}
    scope = merge_scopes(current_scope(), fields)
    token = otel_context.attach(otel_context.set_value(SCOPE_KEY, scope))
    try:
        yield
    finally:
        otel_context.detach(token)


def merge_scopes(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> Mapping[str, Any]:
    """`inner` over `outer` (metadata merged key by key), as a read-only mapping; `outer` or
    `inner` itself when the other is empty and it is one of these already."""
    if not inner and type(outer) is MappingProxyType:
        return outer
    if not outer and type(inner) is MappingProxyType:
        return inner
    merged = dict(outer)
    for key, value in inner.items():
        if value is None:
            continue
        if key == "metadata":
            value = {**merged.get("metadata", {}), **value}
        merged[key] = value
    return MappingProxyType(merged)


def current_scope(context: Context | None = None) -> Mapping[str, Any]:
    """The scope of `context`, else of the current context."""
    return (otel_context.get_current() if context is None else context).get(SCOPE_KEY, _EMPTY)


def resolved_scope(scope: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`scope` (else the current one) with lazy values evaluated and empty ones left out."""
    resolved: dict[str, Any] = {}
    for key, value in (current_scope() if scope is None else scope).items():
        if key == "metadata":
            resolved[key] = dict(value)
            continue
        value = evaluate(value)
        if value is not None:
            resolved[key] = value
    return resolved


def current_position(context: Context | None = None) -> Position | None:
    """The position of `context`, else of the current context."""
    return (otel_context.get_current() if context is None else context).get(POSITION_KEY)


def scope_attributes(scope: Mapping[str, Any]) -> dict[str, str]:
    """The span attributes of a scope: one `respan.*` key per field and per metadata key."""
    attributes: dict[str, str] = {}
    for key, value in scope.items():
        if key == "metadata":
            for meta_key, meta_value in value.items():
                if meta_value is not None:
                    secret = wire.is_secret_name(str(meta_key))
                    shown = wire.REDACTED if secret else str(meta_value)
                    attributes[wire.METADATA_PREFIX + str(meta_key)] = shown
            continue
        value = evaluate(value)
        if value is None:
            continue
        if key == "prompt" and not isinstance(value, str):
            value = _json(value)
        attributes[wire.SCOPE_KEYS[key]] = str(value)
    return attributes


def evaluate(value: Any) -> Any:
    """A scope value as it is now: a lazy value's result, None if it fails."""
    if not callable(value):
        return value
    try:
        return value()
    except Exception:
        logger.debug("evaluating a scope value failed", exc_info=True)
        return None


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


class ScopeProcessor(SpanProcessor):
    """Stamps the scope and the workflow position on every span as it starts.

    The client's defaults act as the outermost scope. A value a span already has is kept.
    """

    def __init__(self, defaults: Mapping[str, Any]):
        self._defaults = MappingProxyType(dict(defaults))
        lazy = any(callable(value) for value in defaults.values())
        # Outside any scope (where every request span starts) the attributes are the defaults'.
        self._default_attributes = None if lazy else scope_attributes(self._defaults)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            context = otel_context.get_current() if parent_context is None else parent_context
            scope = context.get(SCOPE_KEY, _EMPTY)
            if scope or self._default_attributes is None:
                attributes = scope_attributes(merge_scopes(self._defaults, scope))
            else:
                attributes = self._default_attributes
            where = context.get(POSITION_KEY)
            if where is not None:
                attributes = {**attributes, **_position_attributes(span.name, where)}
            if attributes:
                existing = span.attributes or {}
                span.set_attributes(
                    {key: value for key, value in attributes.items() if key not in existing}
                )
        except Exception:
            logger.debug("stamping the scope on a span failed", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        pass


def _position_attributes(name: str, where: Position) -> dict[str, str]:
    attributes = {wire.ENTITY_NAME: name}
    path = where.entity_path or where.workflow_name
    if path:
        attributes[wire.ENTITY_PATH] = path
    if where.workflow_name:
        attributes[wire.WORKFLOW_NAME] = where.workflow_name
    return attributes
