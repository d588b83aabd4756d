"""The Respan LiteLLM guide's examples, run as published but importing from `respan_core`.

LiteLLM calls the loopback LLM (`OPENAI_BASE_URL`) and the client's real exporter posts
OTLP/JSON to the loopback ingest (`RESPAN_BASE_URL`); the tests check what was posted.
"""

import json
import uuid

import litellm
import pytest
from openinference.instrumentation.litellm import LiteLLMInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from respan_core import Respan

# The guide's "Decorators" example, verbatim apart from the import line.
DECORATORS_EXAMPLE = '''
import litellm
from respan_core import Respan, workflow, task, propagate_attributes
from openinference.instrumentation.litellm import LiteLLMInstrumentor

respan = Respan(instrumentations=[LiteLLMInstrumentor()])

@task(name="generate_outline")
def outline(topic: str) -> str:
    response = litellm.completion(
        model="gpt-4.1-nano",
        messages=[
            {"role": "user", "content": f"Create a brief outline about: {topic}"},
        ],
    )
    return response.choices[0].message.content

@workflow(name="content_pipeline")
def pipeline(topic: str):
    plan = outline(topic)
    response = litellm.completion(
        model="gpt-4.1-nano",
        messages=[
            {"role": "user", "content": f"Write content from this outline: {plan}"},
        ],
    )
    print(response.choices[0].message.content)

pipeline("Benefits of API gateways")
respan.flush()
'''

# The guide's "With propagate_attributes" example, verbatim apart from the import line.
PROPAGATE_ATTRIBUTES_EXAMPLE = '''
import litellm
from respan_core import Respan, workflow, task, propagate_attributes
from openinference.instrumentation.litellm import LiteLLMInstrumentor

respan = Respan(
    instrumentations=[LiteLLMInstrumentor()],
    metadata={"service": "chat-api", "version": "1.0.0"},
)

@workflow(name="handle_request")
def handle_request(user_id: str, question: str):
    with propagate_attributes(
        customer_identifier=user_id,
        thread_identifier="conv_001",
        metadata={"plan": "pro"},
    ):
        response = litellm.completion(
            model="gpt-4.1-nano",
            messages=[{"role": "user", "content": question}],
        )
        print(response.choices[0].message.content)
'''

OUTLINE_PROMPT = "Create a brief outline about: Benefits of API gateways"
OUTLINE_REPLY = f"You said: {OUTLINE_PROMPT}"
CONTENT_PROMPT = f"Write content from this outline: {OUTLINE_REPLY}"
QUESTION = "What does an API gateway do?"


def _uninstrument_litellm():
    instrumentor = LiteLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture
def respan_key(llm, ingest, monkeypatch):
    """Point LiteLLM at the loopback LLM and Respan at the loopback ingest, with a fresh key."""
    key = f"respan-seed-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-provider")
    monkeypatch.setenv("RESPAN_API_KEY", key)
    monkeypatch.setenv("RESPAN_BASE_URL", ingest.base_url)
    monkeypatch.delenv("RESPAN_TRACE_CONTENT", raising=False)
    return key


@pytest.fixture
def run_example(respan_key):
    """Run an example's source in a namespace of its own; uninstrument LiteLLM afterwards."""
    _uninstrument_litellm()
    namespaces = []

    def run(source):
        namespace = {"__name__": "seed_example"}
        namespaces.append(namespace)
        exec(compile(source, "<seed example>", "exec"), namespace)
        return namespace

    yield run
    for namespace in namespaces:
        if "respan" in namespace:
            namespace["respan"].shutdown()
    _uninstrument_litellm()


def _new_trace(ingest, before, root_name, count):
    """The spans of the first trace not in `before` whose root is `root_name`, once complete."""

    def root(spans):
        return next(
            (s for s in spans if s.name == root_name and s.trace_id not in before), None
        )

    def complete(spans):
        found = root(spans)
        return found is not None and sum(s.trace_id == found.trace_id for s in spans) >= count

    spans = ingest.wait_for(complete, timeout=30)
    trace_id = root(spans).trace_id
    return [span for span in spans if span.trace_id == trace_id]


def _posts_of(ingest, trace_id):
    with ingest.lock:
        posts = list(ingest.posts)
    return [post for post in posts if any(s.trace_id == trace_id for s in post.spans())]


def _one(spans, name, **attributes):
    (span,) = [
        span
        for span in spans
        if span.name == name
        and all(span.attributes.get(key) == value for key, value in attributes.items())
    ]
    return span


# The "Decorators" example


@pytest.fixture
def decorators_trace(run_example, ingest, capsys):
    before = {span.trace_id for span in ingest.spans()}
    run_example(DECORATORS_EXAMPLE)
    printed = capsys.readouterr().out
    spans = _new_trace(ingest, before, "content_pipeline.workflow", count=4)
    return {"spans": spans, "printed": printed}


def test_decorators_example_prints_the_reply(decorators_trace):
    assert decorators_trace["printed"] == f"You said: {CONTENT_PROMPT}\n"


def test_decorators_example_posts_workflow_task_and_two_llm_spans(decorators_trace):
    names = sorted(span.name for span in decorators_trace["spans"])

    assert names == [
        "completion",
        "completion",
        "content_pipeline.workflow",
        "generate_outline.task",
    ]


def test_decorators_example_spans_chain_workflow_task_completion(decorators_trace):
    spans = decorators_trace["spans"]
    root = _one(spans, "content_pipeline.workflow")
    outline = _one(spans, "generate_outline.task")
    outline_llm = _one(spans, "completion", **{"gen_ai.prompt.0.content": OUTLINE_PROMPT})
    content_llm = _one(spans, "completion", **{"gen_ai.prompt.0.content": CONTENT_PROMPT})

    assert root.parent_span_id == ""
    assert outline.parent_span_id == root.span_id
    assert outline_llm.parent_span_id == outline.span_id
    assert content_llm.parent_span_id == root.span_id


def test_decorators_example_llm_span_carries_gen_ai_keys(decorators_trace):
    span = _one(
        decorators_trace["spans"], "completion", **{"gen_ai.prompt.0.content": OUTLINE_PROMPT}
    )

    expected = {
        "llm.request.type": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4.1-nano",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": OUTLINE_PROMPT,
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": OUTLINE_REPLY,
        # The loopback LLM counts words: 9 in the prompt, 11 in the reply.
        "gen_ai.usage.prompt_tokens": 9,
        "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.completion_tokens": 11,
        "gen_ai.usage.output_tokens": 11,
        "llm.usage.total_tokens": 20,
        "llm.finish_reason": "stop",
    }
    assert {key: span.attributes.get(key) for key in expected} == expected


def test_decorators_example_llm_spans_carry_their_position(decorators_trace):
    spans = decorators_trace["spans"]
    outline_llm = _one(spans, "completion", **{"gen_ai.prompt.0.content": OUTLINE_PROMPT})
    content_llm = _one(spans, "completion", **{"gen_ai.prompt.0.content": CONTENT_PROMPT})

    assert outline_llm.attributes["traceloop.entity.name"] == "completion"
    assert outline_llm.attributes["traceloop.entity.path"] == "generate_outline"
    assert outline_llm.attributes["traceloop.workflow.name"] == "content_pipeline"
    assert content_llm.attributes["traceloop.entity.name"] == "completion"
    assert content_llm.attributes["traceloop.entity.path"] == "content_pipeline"
    assert content_llm.attributes["traceloop.workflow.name"] == "content_pipeline"
    assert json.loads(outline_llm.attributes["traceloop.entity.input"]) == {
        "messages": [{"role": "user", "content": OUTLINE_PROMPT}]
    }
    assert outline_llm.attributes["traceloop.entity.output"] == OUTLINE_REPLY


def test_decorators_example_workflow_and_task_carry_traceloop_keys(decorators_trace):
    spans = decorators_trace["spans"]
    root = _one(spans, "content_pipeline.workflow")
    outline = _one(spans, "generate_outline.task")

    assert root.attributes["traceloop.span.kind"] == "workflow"
    assert root.attributes["traceloop.entity.name"] == "content_pipeline"
    assert root.attributes["traceloop.entity.path"] == ""
    assert root.attributes["traceloop.workflow.name"] == "content_pipeline"
    assert json.loads(root.attributes["traceloop.entity.input"]) == {
        "args": ["Benefits of API gateways"],
        "kwargs": {},
    }
    assert outline.attributes["traceloop.span.kind"] == "task"
    assert outline.attributes["traceloop.entity.name"] == "generate_outline"
    assert outline.attributes["traceloop.entity.path"] == "generate_outline"
    assert outline.attributes["traceloop.workflow.name"] == "content_pipeline"
    assert json.loads(outline.attributes["traceloop.entity.output"]) == OUTLINE_REPLY


def test_decorators_example_posts_to_v2_traces_with_the_bearer_key(
    decorators_trace, ingest, respan_key
):
    posts = _posts_of(ingest, decorators_trace["spans"][0].trace_id)

    assert posts
    for post in posts:
        assert post.path == "/api/v2/traces"
        assert post.headers["Authorization"] == f"Bearer {respan_key}"
        assert post.headers["Content-Type"] == "application/json"


# The "With propagate_attributes" example


@pytest.fixture
def propagate_trace(run_example, ingest, capsys):
    before = {span.trace_id for span in ingest.spans()}
    namespace = run_example(PROPAGATE_ATTRIBUTES_EXAMPLE)
    namespace["handle_request"]("user_123", QUESTION)
    namespace["respan"].flush()
    printed = capsys.readouterr().out
    spans = _new_trace(ingest, before, "handle_request.workflow", count=2)
    return {"spans": spans, "printed": printed}


def test_propagate_example_prints_the_reply(propagate_trace):
    assert propagate_trace["printed"] == f"You said: {QUESTION}\n"


def test_propagate_example_posts_the_llm_span_under_the_workflow(propagate_trace):
    spans = propagate_trace["spans"]
    root = _one(spans, "handle_request.workflow")
    llm_span = _one(spans, "completion")

    assert len(spans) == 2
    assert root.parent_span_id == ""
    assert llm_span.parent_span_id == root.span_id
    assert llm_span.attributes["traceloop.entity.path"] == "handle_request"
    assert llm_span.attributes["traceloop.workflow.name"] == "handle_request"
    assert llm_span.attributes["gen_ai.prompt.0.content"] == QUESTION
    assert llm_span.attributes["gen_ai.completion.0.content"] == f"You said: {QUESTION}"


def test_propagate_example_llm_span_carries_customer_thread_and_merged_metadata(
    propagate_trace,
):
    llm_span = _one(propagate_trace["spans"], "completion")

    expected = {
        "respan.customer_params.customer_identifier": "user_123",
        "respan.threads.thread_identifier": "conv_001",
        "respan.metadata.service": "chat-api",
        "respan.metadata.version": "1.0.0",
        "respan.metadata.plan": "pro",
    }
    assert {key: llm_span.attributes.get(key) for key in expected} == expected


def test_propagate_example_workflow_carries_the_default_metadata(propagate_trace):
    root = _one(propagate_trace["spans"], "handle_request.workflow")

    assert root.attributes["respan.metadata.service"] == "chat-api"
    assert root.attributes["respan.metadata.version"] == "1.0.0"
    assert root.attributes["traceloop.span.kind"] == "workflow"
    assert json.loads(root.attributes["traceloop.entity.input"]) == {
        "args": ["user_123", QUESTION],
        "kwargs": {},
    }


def test_propagate_example_posts_to_v2_traces_with_the_bearer_key(
    propagate_trace, ingest, respan_key
):
    posts = _posts_of(ingest, propagate_trace["spans"][0].trace_id)

    assert posts
    for post in posts:
        assert post.path == "/api/v2/traces"
        assert post.headers["Authorization"] == f"Bearer {respan_key}"


# A client created after another


@pytest.fixture
def litellm_released():
    _uninstrument_litellm()
    yield
    _uninstrument_litellm()


def test_a_new_client_receives_the_llm_spans_after_the_previous_one_shut_down(
    respan_key, litellm_released
):
    first = Respan(exporter=InMemorySpanExporter(), instrumentations=[LiteLLMInstrumentor()])
    first.shutdown()
    exporter = InMemorySpanExporter()
    second = Respan(exporter=exporter, instrumentations=[LiteLLMInstrumentor()])

    try:
        litellm.completion(model="gpt-4.1-nano", messages=[{"role": "user", "content": "Hi"}])
        second.flush()
    finally:
        second.shutdown()

    assert [span.name for span in exporter.get_finished_spans()] == ["completion"]
