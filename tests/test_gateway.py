"""The gateway and both setups: LiteLLM's real HTTP path against a loopback Respan stand-in
(the `ingest` fixture answers both the gateway's chat completions and the trace ingest)."""

import asyncio

import litellm
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from respan_core import Respan, propagate_attributes, workflow
from respan_core.gateway import LOG_ID, bypass, respan_params

KEY = "respan-gateway-key-31"
MESSAGES = [{"role": "user", "content": "Hello through the gateway"}]


@pytest.fixture
def make_client(ingest):
    clients = []

    def make(mode, **options):
        client = Respan(api_key=KEY, base_url=ingest.base_url, mode=mode, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown()


def _last_gateway_call(ingest):
    return ingest.requests[-1]


def test_gateway_mode_sends_the_call_and_the_scope_to_the_gateway(make_client, ingest):
    make_client(
        "gateway",
        environment="production",
        metadata={"service": "chat-api"},
        gateway_params={"fallback_models": ["gpt-4.1-mini"]},
    )

    with propagate_attributes(
        customer_identifier="user-5", thread_identifier="conv-5", metadata={"plan": "pro"}
    ):
        reply = litellm.completion(model="gpt-4.1-nano", messages=MESSAGES)

    assert reply.choices[0].message.content == "You said: Hello through the gateway"
    call = _last_gateway_call(ingest)
    assert call["path"] == "/api/chat/completions"
    assert call["headers"]["authorization"] == f"Bearer {KEY}"
    body = call["body"]
    assert body["model"] == "gpt-4.1-nano"
    assert body["customer_identifier"] == "user-5"
    assert body["thread_identifier"] == "conv-5"
    assert body["environment"] == "production"
    assert body["metadata"] == {"service": "chat-api", "plan": "pro"}
    assert body["fallback_models"] == ["gpt-4.1-mini"]


def test_what_the_caller_passes_wins_over_the_scope(make_client, ingest):
    make_client("gateway", metadata={"service": "chat-api"})

    with propagate_attributes(customer_identifier="user-5", metadata={"plan": "pro"}):
        litellm.completion(
            model="gpt-4.1-nano",
            messages=MESSAGES,
            extra_body={"customer_identifier": "chosen", "metadata": {"plan": "free"}},
        )

    body = _last_gateway_call(ingest)["body"]
    assert body["customer_identifier"] == "chosen"
    assert body["metadata"] == {"service": "chat-api", "plan": "free"}


def test_a_call_with_its_own_api_base_is_left_alone(make_client, ingest, llm):
    make_client("gateway")
    before = len(ingest.requests)

    with propagate_attributes(customer_identifier="user-5"):
        litellm.completion(
            model="gpt-4.1-nano", messages=MESSAGES, api_base=llm.base_url, api_key="sk-own"
        )

    assert len(ingest.requests) == before
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer sk-own"
    assert "customer_identifier" not in llm.requests[-1]["body"]


def test_a_call_inside_bypass_goes_to_its_provider(make_client, ingest, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
    make_client("gateway")
    before = len(ingest.requests)

    with bypass():
        litellm.completion(model="gpt-4.1-nano", messages=MESSAGES)

    assert len(ingest.requests) == before
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer sk-provider"


def test_a_streamed_call_goes_through_the_gateway_with_the_scope(make_client, ingest):
    make_client("gateway")

    with propagate_attributes(customer_identifier="user-6"):
        chunks = litellm.completion(model="gpt-4.1-nano", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert text == "You said: Hello through the gateway"
    body = _last_gateway_call(ingest)["body"]
    assert body["stream"] is True
    assert body["customer_identifier"] == "user-6"


def test_an_async_call_goes_through_the_gateway_with_the_scope(make_client, ingest):
    make_client("gateway")

    async def handle():
        with propagate_attributes(thread_identifier="conv-async"):
            return await litellm.acompletion(model="gpt-4.1-nano", messages=MESSAGES)

    asyncio.run(handle())

    assert _last_gateway_call(ingest)["body"]["thread_identifier"] == "conv-async"


def test_gateway_mode_posts_no_trace(make_client, ingest):
    client = make_client("gateway")
    posts_before = len(ingest.posts)

    @workflow(name="gateway_only")
    def handle():
        return litellm.completion(model="gpt-4.1-nano", messages=MESSAGES)

    handle()
    client.flush()

    assert len(ingest.posts) == posts_before


def test_both_mode_traces_the_call_with_the_gateways_log_id(make_client, ingest, traced_litellm):
    exporter = InMemorySpanExporter()
    client = make_client("both", exporter=exporter)
    client.instrument(traced_litellm)

    @workflow(name="both_setups")
    def handle():
        with propagate_attributes(customer_identifier="user-7"):
            plain = litellm.completion(model="gpt-4.1-nano", messages=MESSAGES)
            streamed = litellm.completion(model="gpt-4.1-nano", messages=MESSAGES, stream=True)
            list(streamed)
            return plain

    handle()
    client.flush()

    llm_spans = [s for s in exporter.get_finished_spans() if s.name == "completion"]
    assert len(llm_spans) == 2
    log_ids = [s.attributes[LOG_ID] for s in llm_spans]
    answered = [f"log-{n}" for n in range(len(ingest.requests) - 1, len(ingest.requests) + 1)]
    assert sorted(log_ids) == sorted(answered)
    assert all(s.attributes["respan.customer_params.customer_identifier"] == "user-7"
               for s in llm_spans)
    assert _last_gateway_call(ingest)["body"]["customer_identifier"] == "user-7"


def test_respan_params_gives_the_current_scope_for_hand_built_requests(make_client):
    make_client("both", environment="staging", gateway_params={"cache_enabled": True})

    with propagate_attributes(
        customer_identifier="user-8", customer_email="ada@example.com", metadata={"n": 3}
    ):
        params = respan_params()

    assert params == {
        "cache_enabled": True,
        "customer_identifier": "user-8",
        "customer_params": {"email": "ada@example.com", "customer_identifier": "user-8"},
        "environment": "staging",
        "metadata": {"n": 3},
    }


def test_tracing_mode_leaves_litellm_calls_alone(make_client, ingest, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
    make_client("tracing")
    before = len(ingest.requests)

    with propagate_attributes(customer_identifier="user-9"):
        litellm.completion(model="gpt-4.1-nano", messages=MESSAGES)

    assert len(ingest.requests) == before
    assert "customer_identifier" not in llm.requests[-1]["body"]


@pytest.mark.parametrize("mode", ["gateway", "both"])
def test_a_gateway_mode_without_an_api_key_is_an_error_at_startup(mode, monkeypatch):
    monkeypatch.delenv("RESPAN_API_KEY", raising=False)

    with pytest.raises(ValueError, match="no key is set: pass api_key= or set the RESPAN_API"):
        Respan(mode=mode)


def test_an_unknown_mode_is_an_error_at_startup():
    with pytest.raises(ValueError, match="mode must be one of tracing, gateway, both"):
        Respan(api_key=KEY, mode="proxy")
