"""Respan's span attribute keys, and the translation of OpenInference LLM spans into them.

Respan reads Traceloop-style keys for workflows and tasks, `respan.*` keys for identity and
`gen_ai.*` keys for LLM calls. openinference-instrumentation-litellm writes OpenInference keys,
so every exporter of this package passes span attributes through `to_respan_attributes` first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

SPAN_KIND = "traceloop.span.kind"
ENTITY_NAME = "traceloop.entity.name"
ENTITY_PATH = "traceloop.entity.path"
WORKFLOW_NAME = "traceloop.workflow.name"
ENTITY_INPUT = "traceloop.entity.input"
ENTITY_OUTPUT = "traceloop.entity.output"

# Scope fields (the keyword arguments of `propagate_attributes`) and their span keys.
SCOPE_KEYS = {
    "customer_identifier": "respan.customer_params.customer_identifier",
    "customer_email": "respan.customer_params.email",
    "customer_name": "respan.customer_params.name",
    "thread_identifier": "respan.threads.thread_identifier",
    "session_identifier": "respan.sessions.session_identifier",
    "custom_identifier": "respan.span_params.custom_identifier",
    "trace_group_identifier": "respan.trace.trace_group_identifier",
    "environment": "respan.environment",
    "prompt": "respan.prompt",
}
METADATA_PREFIX = "respan.metadata."

CUSTOMER_IDENTIFIER = SCOPE_KEYS["customer_identifier"]
THREAD_IDENTIFIER = SCOPE_KEYS["thread_identifier"]
ENVIRONMENT = SCOPE_KEYS["environment"]

_LOG_TYPES = {
    "LLM": "chat",
    "EMBEDDING": "embedding",
    "CHAIN": "workflow",
    "TOOL": "tool",
    "AGENT": "agent",
}
_REQUEST_TYPES = {"LLM": "chat", "EMBEDDING": "embedding"}

_RENAMED = {
    "llm.model_name": ("gen_ai.request.model",),
    "llm.provider": ("gen_ai.system",),
    "llm.system": ("gen_ai.system",),
    "llm.token_count.prompt": ("gen_ai.usage.prompt_tokens", "gen_ai.usage.input_tokens"),
    "llm.token_count.completion": (
        "gen_ai.usage.completion_tokens",
        "gen_ai.usage.output_tokens",
    ),
    "llm.token_count.total": ("llm.usage.total_tokens",),
    "input.value": (ENTITY_INPUT,),
    "output.value": (ENTITY_OUTPUT,),
}
# Content: what the user and the model said. Left out of exports when content capture is off.
_CONTENT_PREFIXES = (
    "input.value",
    "output.value",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts",
    "llm.tools.",
    "llm.request.functions",
    "gen_ai.prompt.",
    "gen_ai.completion.",
    ENTITY_INPUT,
    ENTITY_OUTPUT,
)
INVOCATION_PARAMETERS = "llm.invocation_parameters"
_SECRET_NAME = re.compile(
    r"api[_-]?key|secret|token|password|passwd|authorization|cookie|credential", re.IGNORECASE
)
REDACTED = "[REDACTED]"
MAX_VALUE_LENGTH = 32_768  # characters of one string attribute; longer ones are cut
TRUNCATED = "...[truncated]"

_MESSAGE = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(role|content)$")
_MESSAGE_KEYS = ("llm.input_messages.", "llm.output_messages.")
_MESSAGE_PREFIX = {"input": "gen_ai.prompt", "output": "gen_ai.completion"}


def to_respan_attributes(
    attributes: Mapping[str, Any], trace_content: bool = True
) -> dict[str, Any]:
    """Return the attributes ready for export, OpenInference keys translated to Respan's.

    Keys Respan does not know are kept as they are; a Respan key already present wins over a
    translated one. Secret-looking values in LLM call parameters are redacted, and without
    `trace_content` prompts, completions, inputs and outputs are left out.
    """
    result = _translated(_copied(attributes))
    if INVOCATION_PARAMETERS in result:
        result[INVOCATION_PARAMETERS] = _redacted_json(result[INVOCATION_PARAMETERS], trace_content)
    if not trace_content:
        result = {
            k: v for k, v in result.items()
            if not (isinstance(k, str) and k.startswith(_CONTENT_PREFIXES))
        }
    for key, value in result.items():
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            result[key] = value[: MAX_VALUE_LENGTH - len(TRUNCATED)] + TRUNCATED
    return result


def is_secret_name(name: str) -> bool:
    """Whether a key's name says its value is a secret (api_key, token, password, ...)."""
    return bool(_SECRET_NAME.search(name))


def _copied(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of the attributes: the SDK's mapping copies itself far faster than
    `dict()` can read it key by key."""
    try:
        copied = attributes.copy()  # type: ignore[attr-defined]
    except AttributeError:
        copied = None
    return copied if isinstance(copied, dict) else dict(attributes)


def _translated(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes with Respan's keys added for OpenInference's (changing `attributes`)."""
    kind = attributes.get("openinference.span.kind")
    if kind is None:
        return attributes

    translated: dict[str, Any] = {}
    if kind in _REQUEST_TYPES:
        translated["llm.request.type"] = _REQUEST_TYPES[kind]
    if kind in _LOG_TYPES:
        translated["respan.entity.log_type"] = _LOG_TYPES[kind]

    for key, value in attributes.items():
        renamed = _RENAMED.get(key)
        if renamed is not None:
            for respan_key in renamed:
                translated[respan_key] = (
                    str(value).lower() if respan_key == "gen_ai.system" else value
                )
        elif key.startswith(_MESSAGE_KEYS):
            message = _MESSAGE.match(key)
            if message:
                direction, index, field = message.groups()
                translated[f"{_MESSAGE_PREFIX[direction]}.{index}.{field}"] = value

    for key, value in translated.items():
        attributes.setdefault(key, value)
    return attributes


def _redacted_json(value: Any, trace_content: bool) -> Any:
    try:
        parameters = redact(json.loads(value))
    except (TypeError, ValueError):
        return value
    if not trace_content and isinstance(parameters, dict):
        for content in ("tools", "functions", "messages", "input", "prompt"):
            parameters.pop(content, None)
    return json.dumps(parameters)


def redact(value: Any) -> Any:
    """The value with everything under a secret-looking key (api_key, token, ...) redacted."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_name(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value
