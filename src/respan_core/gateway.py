"""The Respan gateway: LiteLLM calls sent through Respan, with the current scope's identity.

In the `gateway` and `both` modes every `litellm.completion` / `acompletion` call goes to the
Respan base URL with the Respan API key, and carries the current scope (customer, thread,
metadata, environment, ...) as Respan parameters in the request body, merged under what the
caller passed in `extra_body` (the caller wins). A call that names its own `api_base` is left
alone, and so is every call inside `with bypass():`.

`respan_params()` gives the same parameters to code that builds its requests itself.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import trace

from . import client, scope

if TYPE_CHECKING:
    from .client import Respan

logger = logging.getLogger("respan_core")

TRACING, GATEWAY, BOTH = "tracing", "gateway", "both"
MODES = (TRACING, GATEWAY, BOTH)
LOG_ID = "respan.gateway.log_id"
_LOG_ID_HEADER = "llm_provider-x-respan-log-id"
_FUNCTIONS = ("completion", "acompletion")

_bypassed: ContextVar[bool] = ContextVar("respan_gateway_bypassed", default=False)


def respan_params(respan: Respan | None = None) -> dict[str, Any]:
    """The Respan parameters of the current scope, as the gateway takes them in a body.

    Settings' gateway defaults (`fallback_models`, ...) come first; the scope wins over them.
    """
    respan = respan or client.active()
    params: dict[str, Any] = dict(respan.gateway_params) if respan else {}
    current = scope.merge_scopes(respan.defaults if respan else {}, scope.current_scope())
    resolved = {key: scope.evaluate(value) for key, value in current.items()}

    customer = {
        field: resolved.get(key)
        for key, field in (("customer_email", "email"), ("customer_name", "name"))
        if resolved.get(key) is not None
    }
    for key in ("customer_identifier", "thread_identifier", "session_identifier",
                "custom_identifier", "trace_group_identifier", "environment", "prompt"):
        if resolved.get(key) is not None:
            params[key] = resolved[key]
    if customer:
        customer["customer_identifier"] = resolved.get("customer_identifier")
        params["customer_params"] = customer
    metadata = resolved.get("metadata")
    if metadata:
        params["metadata"] = {
            **params.get("metadata", {}),
            **{str(k): v if isinstance(v, (str, int, float, bool)) else str(v)
               for k, v in metadata.items() if v is not None},
        }
    return params


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """LiteLLM calls inside go straight to their provider, not through the gateway."""
    token = _bypassed.set(True)
    try:
        yield
    finally:
        _bypassed.reset(token)


def route_when_imported() -> None:
    """Route LiteLLM through the gateway as soon as the application imports LiteLLM.

    Installed before the tracing instrumentation, so the LLM span sees the gateway's answer.
    """
    wrapt.register_post_import_hook(_install, "litellm")


def _install(litellm: Any) -> None:
    for name in _FUNCTIONS:
        original = getattr(litellm, name, None)
        if original is None or getattr(original, "_respan_gateway", False):
            continue
        wrapper = _async_wrapper(original) if name.startswith("a") else _sync_wrapper(original)
        wrapper._respan_gateway = True  # type: ignore[attr-defined]
        setattr(litellm, name, wrapper)


def _sync_wrapper(original: Callable) -> Callable:
    @functools.wraps(original)
    def completion(*args: Any, **kwargs: Any) -> Any:
        routed = _routed(kwargs)
        if routed is None:
            return original(*args, **kwargs)
        response = original(*args, **routed)
        _record_log_id(response)
        return response

    return completion


def _async_wrapper(original: Callable) -> Callable:
    @functools.wraps(original)
    async def acompletion(*args: Any, **kwargs: Any) -> Any:
        routed = _routed(kwargs)
        if routed is None:
            return await original(*args, **kwargs)
        response = await original(*args, **routed)
        _record_log_id(response)
        return response

    return acompletion


def _routed(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments sent through the gateway, or None to leave the call alone."""
    respan = client.active()
    if respan is None or respan.mode == TRACING or _bypassed.get():
        return None
    if kwargs.get("api_base") or kwargs.get("base_url"):
        return None
    try:
        params = respan_params(respan)
        caller_body = dict(kwargs.get("extra_body") or {})
        body = {**params, **caller_body}
        if isinstance(caller_body.get("metadata"), Mapping):
            body["metadata"] = {**params.get("metadata", {}), **caller_body["metadata"]}
        return {
            **kwargs,
            "api_base": respan.base_url,
            "api_key": respan.api_key,
            "extra_body": body,
        }
    except Exception:
        logger.warning("Respan could not route a LiteLLM call through the gateway", exc_info=True)
        return None


def _record_log_id(response: Any) -> None:
    # The LLM span (started by the tracing instrumentation around this call) is current here.
    try:
        headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers")
        log_id = (headers or {}).get(_LOG_ID_HEADER)
        span = trace.get_current_span()
        if log_id and _is_litellm_span(span):
            span.set_attribute(LOG_ID, str(log_id))
    except Exception:
        logger.debug("reading the gateway's log id failed", exc_info=True)


def _is_litellm_span(span: Any) -> bool:
    instrumentation = getattr(span, "instrumentation_scope", None)
    return getattr(instrumentation, "name", "").startswith("openinference.instrumentation.litellm")
