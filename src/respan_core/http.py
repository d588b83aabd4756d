"""What the web adapters share: the request's workflow span and the incoming trace context."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Status, StatusCode

from . import scope
from .client import Respan
from .entity import WORKFLOW, Entity, span_context_in

logger = logging.getLogger("respan_core")


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


def incoming_context(environ: Mapping[str, Any]) -> Context:
    """The context a request's workflow span starts in: the current one, with the incoming
    trace context if the request brought one.

    Inside a span the application already opened (its own OpenTelemetry server span, say) the
    workflow nests under it; otherwise an incoming `traceparent` header is honoured.
    """
    current = otel_context.get_current()
    if span_context_in(current).is_valid:
        return current
    propagator = propagate.get_global_textmap()
    for key in _environ_keys(propagator):
        if key in environ:
            return propagator.extract(environ, current, _environ_getter)
    return current  # no trace context came with the request: no propagator needs to parse it


_read_by: tuple[Any, tuple[str, ...]] = (None, ())  # the global propagator, its environ keys


def _environ_keys(propagator: Any) -> tuple[str, ...]:
    """The environ keys of the headers the propagator reads (`traceparent`, `baggage`, ...)."""
    global _read_by
    if _read_by[0] is not propagator:
        keys = tuple("HTTP_" + field.upper().replace("-", "_") for field in propagator.fields)
        _read_by = (propagator, keys)
    return _read_by[1]


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
    entity.rename(f"{method} {route}", {"http.route": route})


def response_attributes(
    entity: Entity, status_code: int, identity: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The attributes the request span ends with (`entity.end(...)` takes them): the response's
    status and, the request being handled by now, its `identity` (the scope it ran in), as the
    span started before the application knew the visitor. A 5xx status marks it failed."""
    attributes: dict[str, Any] = scope.scope_attributes(identity) if identity else {}
    attributes["http.response.status_code"] = status_code
    if status_code >= 500 and not entity.failed:
        entity.span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
    return attributes


class RequestContext:
    """What the request's code runs in (its span, position, client and identity scope),
    kept to run the steps of a body streamed after the application returned.

    Each step enters it and leaves it again in the server's own context: a context change
    the body itself makes (Flask's `stream_with_context` pushing its request context) stays
    in the context it was made in, as it would without tracing.
    """

    def __init__(self, entity: Entity):
        self.entity = entity
        self.scope = scope.current_scope()

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        with self.entity.activated(self.scope):
            yield

    def end(self) -> None:
        """End the request span, with the identity as it is by now: the body may have loaded
        the user the view did not."""
        try:
            self.entity.span.set_attributes(scope.scope_attributes(self.scope))
        except Exception:
            logger.debug("recording the identity of a streamed request failed", exc_info=True)
        self.entity.end()


def traced_iteration(chunks: Iterable[Any], request: RequestContext) -> Iterator[Any]:
    """Iterate a streamed response body in the request's context; end the span when done,
    so LLM calls in a generator nest under the request and carry its identity."""
    entity = request.entity
    with request.entered():
        iterator = iter(chunks)
    while True:
        try:
            with request.entered():
                chunk = next(iterator)
        except StopIteration:
            request.end()
            return
        except BaseException as exception:
            entity.fail(exception)
            request.end()
            raise
        yield chunk


async def traced_async_iteration(
    chunks: AsyncIterable[Any], request: RequestContext
) -> AsyncIterator[Any]:
    """`traced_iteration` for an async iterator (ASGI streaming)."""
    entity = request.entity
    iterator = aiter(chunks)
    while True:
        try:
            with request.entered():
                chunk = await anext(iterator)
        except StopAsyncIteration:
            request.end()
            return
        except BaseException as exception:
            entity.fail(exception)
            request.end()
            raise
        yield chunk


class TracedBody:
    """A WSGI response body iterated in the request's context; it ends the request span,
    once, when exhausted or closed."""

    def __init__(self, body: Iterable[bytes], request: RequestContext):
        self._body = body
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        return traced_iteration(self._body, self._request)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                with self._request.entered():
                    close()
        finally:
            self._request.end()
