"""The attribute scope: who the work is for, and where in a workflow it runs.

`propagate_attributes` opens a scope (customer, thread, metadata, environment, ...) that every
span started inside it carries, LLM spans included. `ScopeProcessor` stamps it onto spans as
they start. Scopes live in context variables, so they follow threads' and coroutines' own
contexts, and the Celery hooks carry them into workers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from . import wire

if TYPE_CHECKING:
    from .client import Respan

logger = logging.getLogger("respan_core")

# A scope value is a string, or a zero-argument callable evaluated when a span needs it (the
# web adapters use that for identity the application may establish during the request).
Value = str | Callable[[], str | None] | None

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)
class Position:
    """Where a span runs: the enclosing workflow, and the path of the enclosing task if any.

    A workflow renames itself once its final name is known, hence not frozen.
    """

    workflow_name: str | None
    entity_path: str = ""


class Current(NamedTuple):
    """What the running code runs inside: the client of the current entity span (None: the
    newest client), its position, and the attribute scope (a read-only mapping, see
    `merge_scopes`). One context variable holds the three, so that entering an entity span
    sets one variable besides OpenTelemetry's own."""

    client: Respan | None
    position: Position | None
    scope: Mapping[str, Any]


_OUTSIDE = Current(None, None, _EMPTY)  # outside any entity span and scope
current_var: ContextVar[Current] = ContextVar("respan_current", default=_OUTSIDE)


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
    client, position, scope = current_var.get()
    token = current_var.set(Current(client, position, merge_scopes(scope, fields)))
    try:
        yield
    finally:
        current_var.reset(token)


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


def current_scope() -> Mapping[str, Any]:
    return current_var.get().scope


def resolved_scope() -> dict[str, Any]:
    """The current scope with lazy values evaluated and empty ones left out."""
    resolved: dict[str, Any] = {}
    for key, value in current_var.get().scope.items():
        if key == "metadata":
            resolved[key] = dict(value)
            continue
        value = evaluate(value)
        if value is not None:
            resolved[key] = value
    return resolved


def current_position() -> Position | None:
    return current_var.get().position


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
    """A prompt's fields as JSON: any mapping as an object, what JSON lacks as its str()."""
    import json

    return json.dumps(dict(value) if isinstance(value, Mapping) else value, default=str)


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
            _, where, scope = current_var.get()
            if scope or self._default_attributes is None:
                attributes = scope_attributes(merge_scopes(self._defaults, scope))
            else:
                attributes = self._default_attributes
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
