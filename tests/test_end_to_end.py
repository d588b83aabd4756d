"""The main job, for real: the Django and the Flask chat example under gunicorn, a prefork
Celery worker over Redis, LiteLLM calling the loopback LLM, and the exporter posting to the
loopback ingest.

One chat request must produce one connected trace: the request's workflow span, the view's
LLM span, the Celery task span in the worker and the task's (streaming) LLM span, all with
the user's identity, the environment and the metadata.
"""

import os

import pytest
from chat_stack import STACKS

from respan_core import wire

RESPAN_KEY = "respan-test-key-5f1c"
PROVIDER_KEY = "sk-provider-secret-9a7e"
WORKFLOW = "POST /chat/<int:conversation_id>/"


TASKS = {
    "django": "chat.tasks.summarize_conversation",
    "flask": "chat_app.tasks.summarize_conversation",
}


@pytest.fixture(scope="module", params=sorted(STACKS))
def framework(request):
    return request.param


@pytest.fixture(scope="module")
def site(framework, tmp_path_factory, llm, ingest):
    stack = STACKS[framework](
        tmp_path_factory.mktemp(f"{framework}_chat"),
        {
            "RESPAN_API_KEY": RESPAN_KEY,
            "RESPAN_BASE_URL": ingest.base_url,
            "CHAT_ENVIRONMENT": "e2e",
            "CELERY_BROKER_URL": os.environ["TEST_REDIS_URL"],
            "CELERY_TASK_DEFAULT_QUEUE": os.environ["TEST_CELERY_QUEUE"],
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": PROVIDER_KEY,
        },
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def chat_trace(framework, site, ingest):
    """The four spans of one chat request, found by the request's trace id."""
    site.log_in()
    message = f"How do traces cross into Celery from {framework}?"
    site.chat(7, message)

    def workflow_of(spans):
        # The ingest is shared: this request's workflow is the parent of the LLM call that
        # sent this message.
        asked = [s for s in spans if s.attributes.get("gen_ai.prompt.0.content") == message]
        return next((s for s in spans for a in asked if s.span_id == a.parent_span_id), None)

    def complete(spans):
        workflow = workflow_of(spans)
        return workflow and len([s for s in spans if s.trace_id == workflow.trace_id]) >= 4

    spans = ingest.wait_for(complete)
    workflow = workflow_of(spans)
    in_trace = [s for s in spans if s.trace_id == workflow.trace_id]
    return {
        "all": in_trace,
        "workflow": workflow,
        "task": next(s for s in in_trace if s.name == f"{TASKS[framework]}.task"),
        "llm": [s for s in in_trace if s.name == "completion"],
        "message": message,
    }


def test_one_trace_from_request_to_worker(chat_trace):
    assert len(chat_trace["all"]) == 4
    assert {s.trace_id for s in chat_trace["all"]} == {chat_trace["workflow"].trace_id}
    assert chat_trace["task"].trace_id == chat_trace["workflow"].trace_id


def test_parents_chain_request_then_task_then_llm(chat_trace):
    workflow, task = chat_trace["workflow"], chat_trace["task"]
    view_llm = next(s for s in chat_trace["llm"] if s.parent_span_id == workflow.span_id)
    task_llm = next(s for s in chat_trace["llm"] if s.parent_span_id == task.span_id)

    assert workflow.parent_span_id == ""
    assert task.parent_span_id == workflow.span_id
    assert view_llm.attributes["gen_ai.prompt.0.content"] == chat_trace["message"]
    assert task_llm.attributes["llm.request.type"] == "chat"
    assert task_llm.attributes["gen_ai.usage.prompt_tokens"] > 0
    assert task_llm.attributes["gen_ai.usage.completion_tokens"] > 0


def test_workflow_span_describes_the_request(chat_trace):
    attributes = chat_trace["workflow"].attributes
    assert attributes[wire.SPAN_KIND] == "workflow"
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/chat/<int:conversation_id>/"
    assert attributes["http.response.status_code"] == 200
    assert attributes[wire.WORKFLOW_NAME] == WORKFLOW


def test_task_span_sits_in_the_request_workflow(chat_trace, framework):
    attributes = chat_trace["task"].attributes
    assert attributes[wire.SPAN_KIND] == "task"
    assert attributes[wire.WORKFLOW_NAME] == WORKFLOW
    assert attributes[wire.ENTITY_PATH] == TASKS[framework]
    assert attributes["celery.state"] == "SUCCESS"


def test_every_span_carries_identity_environment_and_metadata(chat_trace, site):
    user_pk = site.user_pk
    threads = set()
    for span in chat_trace["all"]:
        assert span.attributes[wire.CUSTOMER_IDENTIFIER] == user_pk, span.name
        assert span.attributes[wire.ENVIRONMENT] == "e2e", span.name
        assert span.attributes["respan.metadata.service"] == "chat-api", span.name
        threads.add(span.attributes[wire.THREAD_IDENTIFIER])

    assert len(threads) == 1
    session_cookie = site.session.cookies[site.session_cookie]
    assert session_cookie not in threads.pop()


def _posts_of(chat_trace, ingest):
    """The posts that carried spans of the chat trace (other tests share the ingest)."""
    trace_id = chat_trace["workflow"].trace_id
    return [p for p in ingest.posts if any(s.trace_id == trace_id for s in p.spans())]


def test_posts_go_to_v2_traces_with_the_bearer_key(chat_trace, ingest):
    posts = _posts_of(chat_trace, ingest)
    assert len(posts) >= 2  # at least one from the web server, one from the worker
    for post in posts:
        assert post.path == "/api/v2/traces"
        assert post.headers["Authorization"] == f"Bearer {RESPAN_KEY}"
        assert post.headers["Content-Type"] == "application/json"


def test_no_secret_in_the_posted_bytes(chat_trace, ingest, site):
    session_cookie = site.session.cookies[site.session_cookie].encode()
    for post in _posts_of(chat_trace, ingest):
        assert session_cookie not in post.body
        assert PROVIDER_KEY.encode() not in post.body
        assert RESPAN_KEY.encode() not in post.body
