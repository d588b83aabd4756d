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

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import click
from flask import Flask, current_app, got_request_exception, request
from flask.cli import with_appcontext

from respan_core import http, propagate_attributes
from respan_core.check import report, send_test_trace
from respan_core.client import Respan as RespanClient
from respan_core.entity import Entity
from respan_core.scope import scope_attributes
from respan_core.settings import Settings, client_for, parse_settings

from .identity import logged_in_user_id, session_thread_id

logger = logging.getLogger("respan_flask")

_ENVIRON_KEY = "respan.request_span"
_STREAMED_KEY = "respan.streamed"


@dataclasses.dataclass(frozen=True)
class _AppState:
    settings: Settings
    client: RespanClient

    def identity(self) -> dict[str, Callable[[], str | None]]:
        return {
            "customer_identifier": self.settings.customer_identifier,
            "thread_identifier": self.settings.thread_identifier,
        }


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

        app.wsgi_app = _RequestSpanMiddleware(app.wsgi_app, state)
        app.before_request(_name_request_span)
        app.after_request(_record_identity)
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
    """Wraps `app.wsgi_app`: the request span lasts from the first byte to the body's end."""

    def __init__(self, wsgi_app: Callable, state: _AppState):
        self.wsgi_app = wsgi_app
        self.state = state

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if http.skipped(environ.get("PATH_INFO") or "/", self.state.settings.skip_paths):
            return self.wsgi_app(environ, start_response)
        try:
            entity = http.start_request_span(
                self.state.client,
                environ.get("REQUEST_METHOD", "GET"),
                environ.get("PATH_INFO") or "/",
                environ,
            )
        except Exception:
            logger.warning("Respan could not start the span of a request", exc_info=True)
            return self.wsgi_app(environ, start_response)
        environ[_ENVIRON_KEY] = entity

        def traced_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            try:
                http.finish_request_span(entity, int(status.split(" ", 1)[0]))
            except Exception:
                logger.debug("recording the status of a request failed", exc_info=True)
            return start_response(status, headers, exc_info)

        try:
            with entity.activated(), propagate_attributes(**self.state.identity()):
                body = self.wsgi_app(environ, traced_start_response)
                request_context = http.RequestContext(entity)
        except BaseException as exception:
            entity.fail(exception)
            entity.end()
            raise
        if not environ.get(_STREAMED_KEY):
            entity.end()  # the body is made already: the request is done
            return body
        return http.TracedBody(body, request_context)


def _request_span() -> Entity | None:
    return request.environ.get(_ENVIRON_KEY)


def _name_request_span() -> None:
    entity = _request_span()
    if entity is not None and request.url_rule is not None:
        http.name_request_span(entity, request.method, request.url_rule.rule)


def _record_identity(response: Any) -> Any:
    # The request span started before the application knew the visitor; by now it may.
    entity = _request_span()
    if entity is not None:
        request.environ[_STREAMED_KEY] = response.is_streamed
        try:
            state: _AppState = current_app.extensions["respan"]
            entity.span.set_attributes(scope_attributes(state.identity()))
        except Exception:
            logger.debug("recording the identity of a request failed", exc_info=True)
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
