"""`propagate_attributes` and the `Respan(...)` defaults: identity stamped on every span."""

import json
from types import MappingProxyType

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from respan_core import Respan, propagate_attributes, task, wire, workflow

CUSTOMER = "respan.customer_params.customer_identifier"
EMAIL = "respan.customer_params.email"
CUSTOMER_NAME = "respan.customer_params.name"
THREAD = "respan.threads.thread_identifier"
SESSION = "respan.sessions.session_identifier"
CUSTOM = "respan.span_params.custom_identifier"
TRACE_GROUP = "respan.trace.trace_group_identifier"
ENVIRONMENT = "respan.environment"
PROMPT = "respan.prompt"


@pytest.fixture
def make_client():
    """Create `Respan` clients with in-memory exporters; all are shut down afterwards."""
    clients = []

    def make(**defaults):
        exporter = InMemorySpanExporter()
        client = Respan(exporter=exporter, **defaults)
        clients.append(client)

        def spans():
            client.flush()
            return {span.name: dict(span.attributes) for span in exporter.get_finished_spans()}

        client.spans = spans
        return client

    yield make
    for client in clients:
        client.shutdown()


@pytest.fixture
def respan(make_client):
    return make_client()


def _span(client, name, **kwargs):
    client.tracer.start_span(name, **kwargs).end()


def test_every_field_is_stamped_on_a_plain_span_started_inside_the_scope(respan):
    with propagate_attributes(
        customer_identifier="user_123",
        customer_email="ada@example.com",
        customer_name="Ada",
        thread_identifier="conv_001",
        session_identifier="sess_9",
        custom_identifier="req_42",
        trace_group_identifier="group_7",
        environment="staging",
        metadata={"plan": "pro"},
        prompt={"prompt_id": "p1", "variables": {"tone": "dry"}},
    ):
        _span(respan, "plain")

    attributes = respan.spans()["plain"]
    assert {key: attributes[key] for key in attributes if key != PROMPT} == {
        CUSTOMER: "user_123",
        EMAIL: "ada@example.com",
        CUSTOMER_NAME: "Ada",
        THREAD: "conv_001",
        SESSION: "sess_9",
        CUSTOM: "req_42",
        TRACE_GROUP: "group_7",
        ENVIRONMENT: "staging",
        "respan.metadata.plan": "pro",
    }
    assert json.loads(attributes[PROMPT]) == {"prompt_id": "p1", "variables": {"tone": "dry"}}


def test_the_scope_is_stamped_on_workflow_and_task_spans(respan):
    @task(name="t")
    def step():
        return None

    @workflow(name="w")
    def run():
        step()

    with propagate_attributes(customer_identifier="user_123", thread_identifier="conv_001"):
        run()

    spans = respan.spans()
    for name in ("w.workflow", "t.task"):
        assert spans[name][CUSTOMER] == "user_123"
        assert spans[name][THREAD] == "conv_001"


def test_metadata_values_that_are_not_strings_are_stamped_as_strings(respan):
    with propagate_attributes(metadata={"attempt": 3, "beta": True}):
        _span(respan, "plain")

    attributes = respan.spans()["plain"]
    assert attributes["respan.metadata.attempt"] == "3"
    assert attributes["respan.metadata.beta"] == "True"


def test_a_span_outside_any_scope_carries_no_identity(respan):
    _span(respan, "plain")

    assert not [key for key in respan.spans()["plain"] if key.startswith("respan.")]


def test_an_inner_scope_wins_over_an_outer_one(respan):
    with propagate_attributes(customer_identifier="outer", thread_identifier="t_outer"):
        with propagate_attributes(customer_identifier="inner"):
            _span(respan, "inside")

    attributes = respan.spans()["inside"]
    assert attributes[CUSTOMER] == "inner"
    assert attributes[THREAD] == "t_outer"


def test_metadata_of_nested_scopes_merges_key_by_key(respan):
    with propagate_attributes(metadata={"service": "chat", "plan": "free"}):
        with propagate_attributes(metadata={"plan": "pro", "region": "eu"}):
            _span(respan, "inside")

    attributes = respan.spans()["inside"]
    assert attributes["respan.metadata.service"] == "chat"
    assert attributes["respan.metadata.plan"] == "pro"
    assert attributes["respan.metadata.region"] == "eu"


def test_the_outer_scope_is_restored_when_the_inner_one_exits(respan):
    with propagate_attributes(customer_identifier="outer", metadata={"plan": "free"}):
        with propagate_attributes(customer_identifier="inner", metadata={"plan": "pro"}):
            pass
        _span(respan, "after_inner")
    _span(respan, "after_outer")

    spans = respan.spans()
    assert spans["after_inner"][CUSTOMER] == "outer"
    assert spans["after_inner"]["respan.metadata.plan"] == "free"
    assert CUSTOMER not in spans["after_outer"]
    assert "respan.metadata.plan" not in spans["after_outer"]


def test_the_scope_is_restored_when_the_block_raises(respan):
    with pytest.raises(LookupError), propagate_attributes(customer_identifier="leaky"):
        raise LookupError
    _span(respan, "after")

    assert CUSTOMER not in respan.spans()["after"]


def test_respan_defaults_are_stamped_when_no_scope_is_open(make_client):
    client = make_client(
        customer_identifier="default_user",
        thread_identifier="default_thread",
        metadata={"service": "chat-api", "version": "1.0.0"},
        environment="production",
    )

    _span(client, "plain")

    attributes = client.spans()["plain"]
    assert attributes[CUSTOMER] == "default_user"
    assert attributes[THREAD] == "default_thread"
    assert attributes[ENVIRONMENT] == "production"
    assert attributes["respan.metadata.service"] == "chat-api"
    assert attributes["respan.metadata.version"] == "1.0.0"


def test_respan_defaults_act_as_the_outermost_scope(make_client):
    client = make_client(
        customer_identifier="default_user",
        environment="production",
        metadata={"service": "chat-api", "plan": "free"},
    )

    with propagate_attributes(customer_identifier="user_123", metadata={"plan": "pro"}):
        _span(client, "plain")

    attributes = client.spans()["plain"]
    assert attributes[CUSTOMER] == "user_123"
    assert attributes[ENVIRONMENT] == "production"
    assert attributes["respan.metadata.service"] == "chat-api"
    assert attributes["respan.metadata.plan"] == "pro"


def test_a_value_the_span_already_has_is_not_overwritten(respan):
    with propagate_attributes(customer_identifier="scope_user", metadata={"plan": "pro"}):
        _span(
            respan,
            "own",
            attributes={CUSTOMER: "own_user", "respan.metadata.plan": "enterprise"},
        )

    attributes = respan.spans()["own"]
    assert attributes[CUSTOMER] == "own_user"
    assert attributes["respan.metadata.plan"] == "enterprise"


def test_a_lazy_value_is_evaluated_when_each_span_starts(respan):
    current = {"user": None}
    with propagate_attributes(customer_identifier=lambda: current["user"]):
        current["user"] = "first"
        _span(respan, "one")
        current["user"] = "second"
        _span(respan, "two")

    spans = respan.spans()
    assert spans["one"][CUSTOMER] == "first"
    assert spans["two"][CUSTOMER] == "second"


def test_a_lazy_value_is_not_evaluated_before_a_span_starts(respan):
    calls = []

    def customer():
        calls.append(1)
        return "user_123"

    with propagate_attributes(customer_identifier=customer):
        assert calls == []
        _span(respan, "plain")

    assert calls
    assert respan.spans()["plain"][CUSTOMER] == "user_123"


def test_a_lazy_value_that_returns_none_leaves_the_attribute_out(respan):
    with propagate_attributes(customer_identifier=lambda: None, thread_identifier="conv_001"):
        _span(respan, "plain")

    attributes = respan.spans()["plain"]
    assert CUSTOMER not in attributes
    assert attributes[THREAD] == "conv_001"


def test_a_lazy_value_that_raises_does_not_break_span_creation(respan):
    def broken():
        raise RuntimeError("identity lookup failed")

    with propagate_attributes(customer_identifier=broken, thread_identifier="conv_001"):
        with respan.tracer.start_as_current_span("plain"):
            pass

    attributes = respan.spans()["plain"]
    assert CUSTOMER not in attributes
    assert attributes[THREAD] == "conv_001"


def test_a_plain_span_directly_under_a_workflow_gets_its_position(respan):
    @workflow(name="handle_request")
    def handle():
        _span(respan, "completion")

    handle()

    attributes = respan.spans()["completion"]
    assert attributes[wire.WORKFLOW_NAME] == "handle_request"
    assert attributes[wire.ENTITY_PATH] == "handle_request"
    assert attributes[wire.ENTITY_NAME] == "completion"
    assert wire.SPAN_KIND not in attributes


def test_a_plain_span_under_a_task_gets_the_task_path(respan):
    @task(name="b")
    def inner():
        _span(respan, "completion")

    @task(name="a")
    def outer():
        inner()

    @workflow(name="w")
    def run():
        outer()

    run()

    attributes = respan.spans()["completion"]
    assert attributes[wire.WORKFLOW_NAME] == "w"
    assert attributes[wire.ENTITY_PATH] == "a.b"
    assert attributes[wire.ENTITY_NAME] == "completion"


def test_a_context_another_library_attaches_keeps_the_scope_and_the_position(respan):
    # A consumer continuing a producer's trace, or OpenTelemetry's Flask and Celery hooks,
    # attach a context extracted from headers: an empty one but for the remote span.
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    @workflow(name="consume")
    def consume():
        with propagate_attributes(customer_identifier="user_1"):
            token = otel_context.attach(propagate.extract(incoming))
            try:
                _span(respan, "completion")
            finally:
                otel_context.detach(token)

    consume()

    attributes = respan.spans()["completion"]
    assert attributes[CUSTOMER] == "user_1"
    assert attributes[wire.WORKFLOW_NAME] == "consume"


def test_a_plain_span_outside_any_workflow_gets_no_position(respan):
    _span(respan, "completion")

    attributes = respan.spans()["completion"]
    assert wire.WORKFLOW_NAME not in attributes
    assert wire.ENTITY_PATH not in attributes
    assert wire.ENTITY_NAME not in attributes


def test_metadata_under_a_secret_looking_key_is_redacted(respan):
    with propagate_attributes(metadata={"api_key": "sk-live-1", "plan": "pro", "n": 3}):
        _span(respan, "inside")

    attributes = respan.spans()["inside"]
    assert attributes["respan.metadata.api_key"] == "[REDACTED]"
    assert attributes["respan.metadata.plan"] == "pro"
    assert attributes["respan.metadata.n"] == "3"


def test_a_prompt_given_as_any_mapping_is_stamped_as_json(respan):
    with propagate_attributes(prompt=MappingProxyType({"prompt_id": "abc"})):
        _span(respan, "completion")

    assert json.loads(respan.spans()["completion"][PROMPT]) == {"prompt_id": "abc"}
