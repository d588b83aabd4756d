"""The Flask extension: one workflow span per request, with the visitor's customer and thread.

Settings come from `app.config` (keyword options to `Respan(...)` / `init_app(...)` win):

    RESPAN_API_KEY              else the RESPAN_API_KEY variable; none: the local store
    RESPAN_BASE_URL             else RESPAN_BASE_URL, else https://api.respan.ai/api
    RESPAN_ENVIRONMENT          "production", ...
    RESPAN_METADATA             {"service": "chat-api"}
    RESPAN_CUSTOMER_IDENTIFIER  f() -> str | None, or its dotted path (default: Flask-Login)
    RESPAN_THREAD_IDENTIFIER    f() -> str | None, or its dotted path (default: the session)
    RESPAN_LOCAL_STORE, RESPAN_TRACE_CONTENT, RESPAN_SERVICE_NAME,
    RESPAN_INSTRUMENT_LITELLM, RESPAN_INSTRUMENT_CELERY

An unknown `RESPAN_*` key or a value of the wrong type raises `SettingsError` at `init_app`,
naming the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import click
from flask import Flask, current_app, got_request_exception, request
from flask.cli import with_appcontext

from respan_core import http, propagate_attributes
from respan_core.check import report, send_test_trace
from respan_core.client import Respan as RespanClient
from respan_core.entity import Entity, restoring_current
from respan_core.scope import merge_scopes
from respan_core.settings import Settings, client_for, parse_settings

from .identity import logged_in_user_id, session_thread_id

logger = logging.getLogger("respan_flask")

_ENVIRON_KEY = "respan.request_span"
_STREAMED_KEY = "respan.streamed"


@dataclasses.dataclass(frozen=True)
class _AppState:
    settings: Settings
    client: RespanClient

    @functools.cached_property
    def identity(self) -> Mapping[str, Callable[[], str | None]]:
        """The request's identity scope: its values are looked up when a span needs them."""
        return merge_scopes({}, {
            "customer_identifier": self.settings.customer_identifier,
            "thread_identifier": self.settings.thread_identifier,
        })


class Respan:
    """Trace a Flask application's requests, LiteLLM calls and Celery tasks in Respan.

        respan = Respan(app)          # or Respan() now and respan.init_app(app) later

    Keyword options (`environment="production"`, ...) override `app.config`.
    """

    def __init__(self, app: Flask | None = None, **options: Any):
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, **options: Any) -> None:
        if "respan" in app.extensions:
            return  # already traced: initialising twice adds nothing
        settings = load_settings(app, {**self._options, **options})
        state = _AppState(settings, client_for(settings))
        app.extensions["respan"] = state

        app.wsgi_app = _RequestSpanMiddleware(app, state)
        app.before_request(_name_request_span)
        app.after_request(functools.partial(_record_response, state))
        got_request_exception.connect(_record_exception, app, weak=False)
        app.cli.add_command(_cli)

    @staticmethod
    def client(app: Flask) -> RespanClient:
        """The Respan client tracing `app` (to flush it, or to instrument more)."""
        return app.extensions["respan"].client


def load_settings(app: Flask, options: dict[str, Any]) -> Settings:
    """Read the `RESPAN_*` keys of `app.config`, with the keyword options over them.

    A keyword option is checked as its config key: `environment=` as `RESPAN_ENVIRONMENT`.
    """
    raw = {key: value for key, value in app.config.items() if key.startswith("RESPAN_")}
    raw.update({f"RESPAN_{name.upper()}": value for name, value in options.items()})
    settings = parse_settings(raw, container="app.config", prefix="RESPAN_")
    static = (app.static_url_path.rstrip("/") + "/",) if app.static_url_path else ()
    return dataclasses.replace(
        settings,
        customer_identifier=settings.customer_identifier or logged_in_user_id,
        thread_identifier=settings.thread_identifier or session_thread_id,
        skip_paths=settings.skip_paths if settings.skip_paths is not None else static,
    )


class _RequestSpanMiddleware:
    """Wraps `app.wsgi_app`: the request span lasts from the first byte to the body's end.

    Under OpenTelemetry's own Flask instrumentation, whose server span starts in a
    before_request hook, the request span starts in a hook of ours that runs after it instead,
    so that it nests under the server span. The middleware still ends it; a request that hook
    never reached (a hook before it answered, or failed) gets its span late, as its response is
    recorded or as the middleware ends it.
    """

    def __init__(self, app: Flask, state: _AppState):
        self.app = app
        self.wsgi_app = app.wsgi_app
        self.state = state
        self.under_server_span: bool | None = None  # decided at the first request
        self._deciding = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self.under_server_span is None:
            self._decide()
        if http.skipped(environ.get("PATH_INFO") or "/", self.state.settings.skip_paths):
            return self.wsgi_app(environ, start_response)
        if self.under_server_span:
            environ[_ENVIRON_KEY] = None  # for `_start_request_span` to start
            activation = _restoring_current_with(self.state.identity)
        else:
            entity = _start(self.state, environ)
            if entity is None:
                return self.wsgi_app(environ, start_response)
            environ[_ENVIRON_KEY] = entity
            activation = entity.activated(self.state.identity)

        try:
            with activation:
                body = self.wsgi_app(environ, start_response)
                entity = environ[_ENVIRON_KEY] or _start_late(self.state, environ)
                # What a streamed body is made in, after this returns: what the view ran in.
                streamed = environ.get(_STREAMED_KEY)
                request_context = http.RequestContext(entity) if streamed else None
        except BaseException as exception:
            entity = environ[_ENVIRON_KEY] or _start_late(self.state, environ)
            if entity is not None:
                entity.fail(exception)
                entity.end()
            raise
        if entity is None:
            return body
        if request_context is None:
            entity.end()  # the body is made already: the request is done
            return body
        return http.TracedBody(body, request_context)

    def _decide(self) -> None:
        # Decided once, at the first request. OpenTelemetry instruments an app before then
        # (Flask lets no hook be added after it), and a hook added now runs after every hook
        # already there, OpenTelemetry's included.
        with self._deciding:
            if self.under_server_span is not None:
                return
            under = bool(getattr(self.app, "_is_instrumented_by_opentelemetry", False))
            if under:
                try:
                    self.app.before_request(_start_request_span)
                except Exception:  # a request reached the app around this middleware
                    logger.warning(
                        "Respan could not start its request spans under OpenTelemetry's "
                        "server spans; the server spans will nest under them instead",
                        exc_info=True,
                    )
                    under = False
            self.under_server_span = under


@contextlib.contextmanager
def _restoring_current_with(identity: Mapping[str, Callable[[], str | None]]) -> Iterator[None]:
    with restoring_current(), propagate_attributes(**identity):
        yield


def _start(state: _AppState, environ: dict) -> Entity | None:
    try:
        return http.start_request_span(
            state.client,
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO") or "/",
            environ,
        )
    except Exception:
        logger.warning("Respan could not start the span of a request", exc_info=True)
        return None


def _start_late(state: _AppState, environ: dict) -> Entity | None:
    """Start the span of a request our OpenTelemetry hook never reached: inside OpenTelemetry's
    server span if that is still current."""
    entity = environ[_ENVIRON_KEY] = _start(state, environ)
    return entity


def _request_span() -> Entity | None:
    return request.environ.get(_ENVIRON_KEY)


def _name_request_span() -> None:
    current = request._get_current_object()  # once: each use of the proxy looks it up anew
    entity = current.environ.get(_ENVIRON_KEY)
    rule = current.url_rule
    if entity is not None and rule is not None:
        http.name_request_span(entity, current.method, rule.rule)


def _start_request_span() -> None:
    """Under OpenTelemetry's Flask instrumentation, whose hook has run by now: start the request
    span inside its server span and make it current for the rest of the request (the
    middleware's `restoring_current()` undoes that when the request is done)."""
    environ = request.environ
    if _ENVIRON_KEY not in environ:
        return  # a path not traced
    entity = environ[_ENVIRON_KEY] = _start(current_app.extensions["respan"], environ)
    if entity is not None:
        entity.activate_for_good()
        _name_request_span()


def _record_response(state: _AppState, response: Any) -> Any:
    """Record the response's status and the visitor's identity: the request span started
    before the application knew the visitor, and by now it may.

    Flask hands every response it makes to its after_request hooks, error pages included; they
    run latest added first, so this one, added as the extension starts, sees the response the
    hooks added after it made.
    """
    environ = request._get_current_object().environ
    if _ENVIRON_KEY not in environ:
        return response  # a path not traced
    entity = environ[_ENVIRON_KEY] or _start_late(state, environ)
    if entity is not None:
        environ[_STREAMED_KEY] = response.is_streamed
        try:
            entity.span.set_attributes(
                http.response_attributes(entity, response.status_code, state.identity)
            )
        except Exception:
            logger.debug("recording the response of a request failed", exc_info=True)
    return response


def _record_exception(sender: Flask, exception: BaseException, **_: Any) -> None:
    entity = _request_span()
    if entity is not None:
        entity.fail(exception)


@click.group("respan", help="Respan tracing.")
def _cli() -> None:
    pass


@_cli.command("check", help="Send one test trace to the configured destination.")
@with_appcontext
def _check() -> None:
    text, status = report(send_test_trace(current_app.extensions["respan"].client))
    click.echo(text)
    if status:
        raise SystemExit(status)
