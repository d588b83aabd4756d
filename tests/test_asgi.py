"""Django under a real ASGI server (uvicorn): async views with async LiteLLM calls, and an
async streamed response, traced like everything else."""

import os

import pytest
import requests
from chat_stack import DjangoChatStack

from respan_core import wire

KEY = "asgi-key"


@pytest.fixture(scope="module")
def site(tmp_path_factory, llm, ingest):
    stack = DjangoChatStack(
        tmp_path_factory.mktemp("asgi"),
        {
            "RESPAN_API_KEY": KEY,
            "RESPAN_BASE_URL": ingest.base_url,
            "CELERY_BROKER_URL": os.environ["TEST_REDIS_URL"],
            "CELERY_TASK_DEFAULT_QUEUE": os.environ["TEST_CELERY_QUEUE"],
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "sk-provider",
        },
        asgi=True,
    ).start()
    stack.log_in()
    yield stack
    stack.stop()


def _request_trace(ingest, message, workflow_name):
    """The workflow span of the request that sent `message`, and its trace's other spans."""

    def arrived(spans):
        asked = [s for s in spans if s.attributes.get("gen_ai.prompt.0.content") == message]
        return asked and any(s.span_id == asked[0].parent_span_id for s in spans)

    spans = ingest.wait_for(arrived)
    llm_span = next(s for s in spans if s.attributes.get("gen_ai.prompt.0.content") == message)
    workflow = next(s for s in spans if s.span_id == llm_span.parent_span_id)
    assert workflow.name == workflow_name
    return workflow, llm_span, [s for s in spans if s.trace_id == workflow.trace_id]


def test_an_async_view_and_its_async_llm_call_are_one_trace(site, ingest):
    message = "async view under uvicorn"
    assert site.chat(5, message, view="async")["reply"] == f"You said: {message}"

    workflow, llm_span, spans = _request_trace(
        ingest, message, "POST /chat/<int:conversation_id>/async/"
    )
    assert workflow.parent_span_id == ""
    assert len(spans) == 2
    for span in spans:
        assert span.attributes[wire.CUSTOMER_IDENTIFIER] == site.user_pk
        assert span.attributes[wire.THREAD_IDENTIFIER]


def test_an_async_streamed_reply_nests_its_llm_call_and_ends_after_it(site, ingest):
    message = "stream me under uvicorn"
    body = site.post_message(5, message, view="stream").text
    assert body == f"You said: {message}"

    workflow, llm_span, spans = _request_trace(
        ingest, message, "POST /chat/<int:conversation_id>/stream/"
    )
    assert len([s for s in spans if s.name == workflow.name]) == 1
    assert llm_span.attributes["gen_ai.usage.completion_tokens"] > 0
    assert llm_span.attributes[wire.CUSTOMER_IDENTIFIER] == site.user_pk
    assert workflow.attributes["http.response.status_code"] == 200


def test_consecutive_requests_share_nothing(site, ingest):
    first, second = "first of two", "second of two"
    site.chat(6, first, view="async")
    site.chat(6, second, view="async")

    one = _request_trace(ingest, first, "POST /chat/<int:conversation_id>/async/")[0]
    two = _request_trace(ingest, second, "POST /chat/<int:conversation_id>/async/")[0]
    assert one.trace_id != two.trace_id
    assert two.parent_span_id == ""


def test_a_request_the_client_hangs_up_on_ends_its_span_as_cancelled(site, ingest):
    message = "[slow] hang up on me"
    with pytest.raises(requests.exceptions.ReadTimeout):
        site.session.post(
            f"{site.base_url}/chat/7/async/", json={"message": message},
            headers=site.request_headers(), timeout=1,
        )

    def cancelled(spans):
        return any(
            s.name == "POST /chat/<int:conversation_id>/async/" and s.status_code == 2
            and any(e["name"] == "exception" for e in s.events) for s in spans
        )

    spans = ingest.wait_for(cancelled, timeout=30)
    workflow = next(s for s in spans if s.name == "POST /chat/<int:conversation_id>/async/"
                    and s.status_code == 2)
    types = [a["value"]["stringValue"] for e in workflow.events for a in e["attributes"]
             if a["key"] == "exception.type"]
    assert types == ["asyncio.exceptions.CancelledError"]

    after = "after the hang-up"
    assert site.chat(7, after, view="async")["reply"] == f"You said: {after}"
    next_workflow = _request_trace(ingest, after, "POST /chat/<int:conversation_id>/async/")[0]
    assert next_workflow.parent_span_id == ""
    assert next_workflow.status_code != 2
    assert "Failed to detach context" not in (site.data_dir / "web.log").read_text()
