"""The gateway setups for real: the Django chat example under gunicorn with a prefork worker
over Redis, its LLM calls (a view's plain one, the task's streamed one, an async view's) sent
through a loopback Respan stand-in that is gateway and trace ingest at once."""

import os

import pytest
from chat_stack import DjangoChatStack

from respan_core import wire
from respan_core.gateway import LOG_ID

RESPAN_KEY = "respan-gateway-e2e-key"


@pytest.fixture(scope="module", params=["both", "gateway"])
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def chat(mode, tmp_path_factory, ingest):
    """One chat request; the gateway calls it caused, and the spans of its trace if any."""
    stack = DjangoChatStack(
        tmp_path_factory.mktemp(f"gateway_{mode}"),
        {
            "RESPAN_API_KEY": RESPAN_KEY,
            "RESPAN_BASE_URL": ingest.base_url,
            "RESPAN_MODE": mode,
            "CELERY_BROKER_URL": os.environ["TEST_REDIS_URL"],
            "CELERY_TASK_DEFAULT_QUEUE": os.environ["TEST_CELERY_QUEUE"],
            "OPENAI_API_KEY": "sk-provider-never-used",
        },
    ).start()
    try:
        stack.log_in()
        message = f"Through the gateway in {mode} mode"
        stack.chat(3, message)
        async_message = f"Through the gateway from an async view in {mode} mode"
        stack.chat(3, async_message, view="async")

        def mentions(call, text):
            return any(text in str(m.get("content")) for m in call["body"]["messages"])

        def calls_arrived():
            return len([c for c in ingest.requests if mentions(c, message)]) >= 2 and any(
                mentions(c, async_message) for c in ingest.requests
            )

        ingest.wait_for(lambda spans: calls_arrived())
        calls = [c for c in ingest.requests if mentions(c, message)]
        async_call = next(c for c in ingest.requests if mentions(c, async_message))
        if mode == "both":
            spans = ingest.wait_for(
                lambda spans: len([s for s in spans if s.attributes.get(LOG_ID) in
                                   {f"log-{ingest.requests.index(c) + 1}" for c in calls}]) == 2
            )
        else:
            stack.stop()  # flushes whatever each process holds
            spans = ingest.spans()
        yield {"calls": calls, "async_call": async_call, "spans": spans,
               "user_pk": stack.user_pk,
               "log_ids": {f"log-{ingest.requests.index(c) + 1}" for c in calls},
               "session_cookie": stack.session.cookies["sessionid"]}
    finally:
        stack.stop()


def test_the_views_and_the_tasks_calls_go_through_the_gateway_with_the_key(chat):
    view_call, task_call = chat["calls"]
    for call in (view_call, task_call, chat["async_call"]):
        assert call["path"] == "/api/chat/completions"
        assert call["headers"]["authorization"] == f"Bearer {RESPAN_KEY}"
    assert task_call["body"]["stream"] is True


def test_every_call_carries_the_requests_identity_as_respan_parameters(chat):
    view_call, task_call = chat["calls"]
    for call in (view_call, task_call, chat["async_call"]):
        body = call["body"]
        assert body["customer_identifier"] == chat["user_pk"]
        assert body["environment"] == "development"
        assert body["metadata"] == {"service": "chat-api"}
    thread = view_call["body"]["thread_identifier"]
    assert task_call["body"]["thread_identifier"] == thread
    assert chat["async_call"]["body"]["thread_identifier"] == thread
    assert chat["session_cookie"] not in thread


@pytest.mark.parametrize("mode", ["both"], indirect=True)
def test_in_both_mode_the_llm_spans_carry_the_gateways_log_ids(chat):
    llm_spans = [s for s in chat["spans"] if s.attributes.get(LOG_ID) in chat["log_ids"]]
    assert {s.attributes[LOG_ID] for s in llm_spans} == chat["log_ids"]
    assert len({s.trace_id for s in llm_spans}) == 1
    for span in llm_spans:
        assert span.attributes[wire.CUSTOMER_IDENTIFIER] == chat["user_pk"]


@pytest.mark.parametrize("mode", ["gateway"], indirect=True)
def test_in_gateway_mode_nothing_is_posted_to_the_trace_endpoint(chat):
    message = chat["calls"][0]["body"]["messages"][0]["content"]
    assert not [s for s in chat["spans"] if message in str(s.attributes)]
    assert not [s for s in chat["spans"] if s.attributes.get(LOG_ID) in chat["log_ids"]]
