"""What the web adapters share: the request's workflow span and the incoming trace context."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Status, StatusCode

from .client import Respan
from .entity import WORKFLOW, Entity


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads HTTP headers out of a WSGI environ (or Django's `request.META`)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


_environ_getter = _EnvironGetter()


def skipped(path: str, skip_paths: tuple[str, ...]) -> bool:
    """Whether a request path is one not to trace (static files, health checks, ...)."""
    return path.startswith(skip_paths) if skip_paths else False


def incoming_context(environ: Mapping[str, Any]) -> Context | None:
    """The parent of a request's workflow span.

    Inside a span the application already opened (its own OpenTelemetry server span, say) the
    workflow nests under it; otherwise an incoming `traceparent` header is honoured.
    """
    if trace.get_current_span().get_span_context().is_valid:
        return None
    return propagate.extract(environ, getter=_environ_getter)


def start_request_span(
    respan: Respan, method: str, path: str, environ: Mapping[str, Any]
) -> Entity:
    """Open the workflow span of one HTTP request, named `METHOD /path` until renamed."""
    return Entity(
        WORKFLOW,
        f"{method} {path}",
        span_name=f"{method} {path}",
        parent=incoming_context(environ),
        attributes={"http.request.method": method, "url.path": path},
        respan=respan,
    )


def name_request_span(entity: Entity, method: str, route: str) -> None:
    """Name the span after the route pattern once routing has matched one."""
    entity.rename(f"{method} {route}")
    entity.span.set_attribute("http.route", route)


def finish_request_span(entity: Entity, status_code: int) -> None:
    entity.span.set_attribute("http.response.status_code", status_code)
    if status_code >= 500 and not entity.failed:
        entity.span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))


def traced_iteration(
    chunks: Iterable[Any], entity: Entity, context: contextvars.Context
) -> Iterator[Any]:
    """Iterate a streamed response body in the request's context; end the span when done.

    A streamed body is produced after the application returned: each chunk is made in the
    request's own context, so LLM calls in a generator nest under the request and carry its
    identity.
    """
    iterator = context.run(iter, chunks)
    while True:
        try:
            chunk = context.run(next, iterator)
        except StopIteration:
            entity.end()
            return
        except BaseException as exception:
            entity.fail(exception)
            entity.end()
            raise
        yield chunk


async def traced_async_iteration(
    chunks: AsyncIterable[Any], entity: Entity, context: contextvars.Context
) -> AsyncIterator[Any]:
    """`traced_iteration` for an async iterator (ASGI streaming): each chunk is awaited as a
    task in the request's context."""
    iterator = context.run(aiter, chunks)
    while True:
        try:
            chunk = await asyncio.create_task(anext(iterator), context=context)
        except StopAsyncIteration:
            entity.end()
            return
        except BaseException as exception:
            entity.fail(exception)
            entity.end()
            raise
        yield chunk


class TracedBody:
    """A WSGI response body iterated in the request's context; it ends the request span,
    once, when exhausted or closed."""

    def __init__(self, body: Iterable[bytes], entity: Entity, context: contextvars.Context):
        self._body = body
        self._entity = entity
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        return traced_iteration(self._body, self._entity, self._context)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._entity.end()
