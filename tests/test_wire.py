"""The translation of OpenInference LLM span attributes into the keys Respan reads."""

import json
import re

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from respan_core.export import encode
from respan_core.wire import to_respan_attributes

LLM = {"openinference.span.kind": "LLM"}


@pytest.mark.parametrize(
    ("kind", "request_type", "log_type"),
    [("LLM", "chat", "chat"), ("EMBEDDING", "embedding", "embedding")],
)
def test_llm_and_embedding_kinds_set_request_type_and_log_type(kind, request_type, log_type):
    result = to_respan_attributes({"openinference.span.kind": kind})

    assert result["llm.request.type"] == request_type
    assert result["respan.entity.log_type"] == log_type


@pytest.mark.parametrize(
    ("kind", "log_type"), [("CHAIN", "workflow"), ("TOOL", "tool"), ("AGENT", "agent")]
)
def test_chain_tool_and_agent_kinds_set_only_the_log_type(kind, log_type):
    result = to_respan_attributes({"openinference.span.kind": kind})

    assert result["respan.entity.log_type"] == log_type
    assert "llm.request.type" not in result


def test_model_name_becomes_the_request_model():
    result = to_respan_attributes({**LLM, "llm.model_name": "gpt-4.1-nano"})

    assert result["gen_ai.request.model"] == "gpt-4.1-nano"


@pytest.mark.parametrize("key", ["llm.provider", "llm.system"])
def test_provider_and_system_become_the_lowercase_gen_ai_system(key):
    result = to_respan_attributes({**LLM, key: "OpenAI"})

    assert result["gen_ai.system"] == "openai"


def test_input_messages_become_prompt_messages_by_index():
    result = to_respan_attributes(
        {
            **LLM,
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Be brief.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "Say hello.",
        }
    )

    assert result["gen_ai.prompt.0.role"] == "system"
    assert result["gen_ai.prompt.0.content"] == "Be brief."
    assert result["gen_ai.prompt.1.role"] == "user"
    assert result["gen_ai.prompt.1.content"] == "Say hello."


def test_output_messages_become_completion_messages_by_index():
    result = to_respan_attributes(
        {
            **LLM,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Hello.",
        }
    )

    assert result["gen_ai.completion.0.role"] == "assistant"
    assert result["gen_ai.completion.0.content"] == "Hello."


def test_prompt_token_count_becomes_prompt_and_input_tokens():
    result = to_respan_attributes({**LLM, "llm.token_count.prompt": 9})

    assert result["gen_ai.usage.prompt_tokens"] == 9
    assert result["gen_ai.usage.input_tokens"] == 9


def test_completion_token_count_becomes_completion_and_output_tokens():
    result = to_respan_attributes({**LLM, "llm.token_count.completion": 11})

    assert result["gen_ai.usage.completion_tokens"] == 11
    assert result["gen_ai.usage.output_tokens"] == 11


def test_total_token_count_becomes_total_tokens():
    result = to_respan_attributes({**LLM, "llm.token_count.total": 20})

    assert result["llm.usage.total_tokens"] == 20


def test_input_and_output_values_become_entity_input_and_output():
    result = to_respan_attributes(
        {**LLM, "input.value": '{"messages": []}', "output.value": "Hello."}
    )

    assert result["traceloop.entity.input"] == '{"messages": []}'
    assert result["traceloop.entity.output"] == "Hello."


def test_finish_reason_is_kept_as_is():
    result = to_respan_attributes({**LLM, "llm.finish_reason": "stop"})

    assert result["llm.finish_reason"] == "stop"


def test_keys_respan_does_not_know_are_kept():
    attributes = {
        **LLM,
        "llm.invocation_parameters": '{"temperature": 0}',
        "app.request_id": "req_42",
    }

    result = to_respan_attributes(attributes)

    assert result["llm.invocation_parameters"] == '{"temperature": 0}'
    assert result["app.request_id"] == "req_42"
    assert result["openinference.span.kind"] == "LLM"


def test_a_respan_key_already_present_wins_over_a_translated_one():
    result = to_respan_attributes(
        {
            **LLM,
            "llm.model_name": "translated-model",
            "gen_ai.request.model": "explicit-model",
            "llm.token_count.prompt": 9,
            "gen_ai.usage.prompt_tokens": 7,
            "llm.request.type": "embedding",
            "llm.input_messages.0.message.content": "translated",
            "gen_ai.prompt.0.content": "explicit",
        }
    )

    assert result["gen_ai.request.model"] == "explicit-model"
    assert result["gen_ai.usage.prompt_tokens"] == 7
    assert result["gen_ai.usage.input_tokens"] == 9
    assert result["llm.request.type"] == "embedding"
    assert result["gen_ai.prompt.0.content"] == "explicit"


def test_attributes_without_openinference_keys_come_back_unchanged():
    attributes = {"traceloop.span.kind": "task", "respan.metadata.plan": "pro"}

    assert to_respan_attributes(attributes) == attributes


def test_the_attributes_passed_in_are_not_modified():
    attributes = {**LLM, "llm.model_name": "gpt-4.1-nano"}

    to_respan_attributes(attributes)

    assert attributes == {**LLM, "llm.model_name": "gpt-4.1-nano"}


def test_the_export_body_carries_the_translated_keys_as_otlp_json():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("test").start_span(
        "completion",
        attributes={**LLM, "llm.model_name": "gpt-4.1-nano", "llm.token_count.total": 20},
    ).end()
    provider.shutdown()

    body = json.loads(encode(exporter.get_finished_spans()))

    (span,) = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attributes = {item["key"]: item["value"] for item in span["attributes"]}
    assert attributes["gen_ai.request.model"] == {"stringValue": "gpt-4.1-nano"}
    assert attributes["llm.usage.total_tokens"] == {"intValue": "20"}
    assert attributes["llm.request.type"] == {"stringValue": "chat"}
    assert re.fullmatch("[0-9a-f]{32}", span["traceId"])
    assert re.fullmatch("[0-9a-f]{16}", span["spanId"])
    assert "parentSpanId" not in span


def test_secret_looking_llm_call_parameters_are_redacted():
    parameters = {
        "model": "gpt-4.1-nano",
        "api_key": "sk-secret",
        "extra_headers": {"Authorization": "Bearer hdr-secret", "X-Trace": "ok"},
    }
    attributes = to_respan_attributes(
        {"openinference.span.kind": "LLM", "llm.invocation_parameters": json.dumps(parameters)}
    )

    assert json.loads(attributes["llm.invocation_parameters"]) == {
        "model": "gpt-4.1-nano",
        "api_key": "[REDACTED]",
        "extra_headers": {"Authorization": "[REDACTED]", "X-Trace": "ok"},
    }


def test_without_content_capture_prompts_and_completions_are_left_out():
    attributes = to_respan_attributes(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4.1-nano",
            "llm.token_count.prompt": 9,
            "input.value": "private prompt",
            "output.value": "private answer",
            "llm.input_messages.0.message.content": "private prompt",
            "llm.output_messages.0.message.content": "private answer",
            "respan.customer_params.customer_identifier": "u1",
        },
        trace_content=False,
    )

    assert "private" not in json.dumps(attributes)
    assert attributes["gen_ai.request.model"] == "gpt-4.1-nano"
    assert attributes["gen_ai.usage.prompt_tokens"] == 9
    assert attributes["respan.customer_params.customer_identifier"] == "u1"


def test_an_oversized_value_is_cut_with_a_marker():
    attributes = to_respan_attributes({"traceloop.entity.input": "x" * 100_000, "n": 5})

    value = attributes["traceloop.entity.input"]
    assert len(value) == 32_768
    assert value.endswith("...[truncated]")
    assert attributes["n"] == 5


def test_without_content_capture_tool_definitions_are_left_out():
    parameters = {"model": "gpt-4.1-nano", "tools": [{"description": "TOOL-PRIVATE"}]}
    attributes = to_respan_attributes(
        {
            "openinference.span.kind": "LLM",
            "llm.invocation_parameters": json.dumps(parameters),
            "llm.tools.0.tool.json_schema": '{"description": "TOOL-PRIVATE"}',
        },
        trace_content=False,
    )

    assert "TOOL-PRIVATE" not in json.dumps(attributes)
    assert json.loads(attributes["llm.invocation_parameters"]) == {"model": "gpt-4.1-nano"}


def _protobuf_json(spans):
    """What OpenTelemetry's own OTLP encoder makes of the spans, in OTLP/JSON's spelling:
    ids in hex where protobuf's JSON mapping writes base64, enums as numbers."""
    import base64

    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    def hex_ids(value):
        if isinstance(value, dict):
            return {
                key: base64.b64decode(item).hex() if key in ("traceId", "spanId", "parentSpanId")
                else hex_ids(item)
                for key, item in value.items()
                if key != "flags"  # W3C trace flags: newer SDKs write them, Respan reads none
            }
        if isinstance(value, list):
            return [hex_ids(item) for item in value]
        return value

    return hex_ids(MessageToDict(encode_spans(spans), use_integers_for_enums=True))


def _without_defaults(value):
    """OTLP/JSON leaves fields at their default value out, or not: the same message either way."""
    if isinstance(value, dict):
        kept = {key: _without_defaults(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in ([], {}, 0) or item is False}
    if isinstance(value, list):
        return [_without_defaults(item) for item in value]
    return value


def test_the_export_body_is_what_opentelemetrys_own_encoder_writes():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test", "1.2")
    values = {
        "text": 'quotes " and \\ and a newline\n, unicode é 漢字 and \u2028',
        "yes": True,
        "no": False,
        "count": 2**62,
        "negative": -7,
        "ratio": 0.25,
        "not_a_number": float("nan"),
        "infinite": float("-inf"),
        "names": ("a", "b"),
        "numbers": (1, 2),
        "flags": (True, False),
        "ratios": (0.5, 1.5),
        "with_gaps": ("a", None, "b"),
        "float_subclass": _Score(0.93),  # a numpy float's repr is not JSON
        **{f"extra.{n}": n for n in range(130)},  # past the SDK's limit: dropped, and counted
    }
    with tracer.start_as_current_span("parent") as parent:
        child = tracer.start_span("child", attributes=values, links=[
            trace.Link(parent.get_span_context(), {"why": "linked"})
        ])
        child.add_event("happened", {"detail": "x", "n": 3})
        child.set_status(trace.Status(trace.StatusCode.ERROR, "it failed"))
        child.end()
    remote = trace.SpanContext(
        0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(1),
        trace_state=trace.TraceState([("vendor", "v1")]),
    )
    provider.get_tracer("other").start_span(
        "alone", trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        kind=trace.SpanKind.SERVER,
    ).end()
    provider.shutdown()
    spans = exporter.get_finished_spans()

    assert _without_defaults(json.loads(encode(spans))) == _without_defaults(_protobuf_json(spans))


class _Score(float):
    def __repr__(self):
        return f"Score({float(self)})"


def test_values_no_otlp_field_can_hold_are_written_as_strings_or_left_out():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("big", attributes={"big": 2**70, "ok": 1})
    span.end()

    body = json.loads(encode(exporter.get_finished_spans()))

    (encoded,) = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    values = {item["key"]: item["value"] for item in encoded["attributes"]}
    assert values == {"big": {"stringValue": str(2**70)}, "ok": {"intValue": "1"}}
