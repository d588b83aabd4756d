"""One workflow span per request, carrying the request's customer and thread.

Place `respan_django.middleware.RespanMiddleware` after `AuthenticationMiddleware`. Every span
started while the request is handled (LiteLLM calls, `@task` functions, Celery tasks sent from
the view) joins the request's trace and carries its identity.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from respan_core import http
from respan_core.entity import Entity

from .apps import start

logger = logging.getLogger("respan_django")

_REQUEST_SPAN = "_respan_span"


def _forget_span(request: Any) -> None:
    """Drop the request's reference to its span once the view is done with it. A request is
    freed by the garbage collector, not as it goes out of use (its lazy user refers back to
    it): the span's objects should not wait for the collector with it."""
    request.__dict__.pop(_REQUEST_SPAN, None)


class RespanMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.settings, self.client = start()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        entity = self._start(request)
        if entity is None:
            return self.get_response(request)
        identity = self._identity(request)
        try:
            with entity.activated(identity):
                response = self.get_response(request)
                request_context = self._streamed_in(entity, response)
        except BaseException as exception:
            self._fail(entity, exception)
            raise
        finally:
            _forget_span(request)
        self._finish(entity, identity, response, request_context)
        return response

    async def _acall(self, request: Any) -> Any:
        entity = self._start(request)
        if entity is None:
            return await self.get_response(request)
        identity = self._identity(request)
        try:
            with entity.activated(identity):
                response = await self.get_response(request)
                request_context = self._streamed_in(entity, response)
        except BaseException as exception:
            self._fail(entity, exception)
            raise
        finally:
            _forget_span(request)
        self._finish(entity, identity, response, request_context)
        return response

    def process_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> None:
        entity: Entity | None = getattr(request, _REQUEST_SPAN, None)
        match = getattr(request, "resolver_match", None)
        if entity is not None and match is not None and match.route:
            http.name_request_span(entity, request.method, "/" + match.route.lstrip("^/"))
        return None

    def process_exception(self, request: Any, exception: Exception) -> None:
        entity: Entity | None = getattr(request, _REQUEST_SPAN, None)
        if entity is not None:
            entity.fail(exception)
        return None

    def _start(self, request: Any) -> Entity | None:
        if http.skipped(request.path, self.settings.skip_paths):
            return None
        try:
            entity = http.start_request_span(
                self.client, request.method, request.path, request.META
            )
            setattr(request, _REQUEST_SPAN, entity)
            return entity
        except Exception:
            logger.warning("Respan could not start the span of a request", exc_info=True)
            return None

    def _identity(self, request: Any) -> Mapping[str, Callable[[], str | None]]:
        # Evaluated each time a span starts, so identity the view establishes (a login, an
        # API authentication) is still picked up. Read-only, as a scope is: it is entered as
        # it is.
        return MappingProxyType({
            "customer_identifier": functools.partial(self.settings.customer_identifier, request),
            "thread_identifier": functools.partial(self.settings.thread_identifier, request),
        })

    def _streamed_in(self, entity: Entity, response: Any) -> http.RequestContext | None:
        """What a streamed body is made in, after the view returned: what the view ran in."""
        return http.RequestContext(entity) if getattr(response, "streaming", False) else None

    def _fail(self, entity: Entity, exception: BaseException) -> None:
        entity.fail(exception)
        entity.end()

    def _finish(
        self,
        entity: Entity,
        identity: Mapping[str, Callable[[], str | None]],
        response: Any,
        request_context: http.RequestContext | None,
    ) -> None:
        attributes = None
        try:
            attributes = http.response_attributes(entity, response.status_code, identity)
        except Exception:
            logger.debug("recording the response of a request failed", exc_info=True)
        if request_context is None:
            entity.end(attributes)
            return
        if attributes:
            entity.span.set_attributes(attributes)
        # The body is produced after this returns: in the request's context, and the span
        # ends when it is exhausted or the server closes the response.
        traced = http.traced_async_iteration if response.is_async else http.traced_iteration
        response.streaming_content = traced(response.streaming_content, request_context)
        response._resource_closers.append(request_context.end)
