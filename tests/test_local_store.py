"""The local store: without an API key, spans go to SQLite and `respan traces` prints them."""

import os
import re
import sqlite3
import time

import pytest

from respan_core import Respan, propagate_attributes, task, workflow
from respan_core.cli import main
from respan_core.local_store import recent_traces

LLM_ATTRIBUTES = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4.1-nano",
    "llm.token_count.prompt": 9,
    "llm.token_count.completion": 11,
}


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "t.sqlite3")


@pytest.fixture
def respan(store, monkeypatch):
    monkeypatch.delenv("RESPAN_API_KEY", raising=False)
    client = Respan(local_store=store)
    yield client
    client.shutdown()


def _pipeline(respan):
    """A workflow with a task and, under the task, an LLM span with a fixed 12.5 ms duration."""

    @task(name="generate_outline")
    def outline():
        start = time.time_ns()
        span = respan.tracer.start_span("completion", attributes=LLM_ATTRIBUTES, start_time=start)
        span.end(end_time=start + 12_500_000)

    @workflow(name="content_pipeline")
    def pipeline():
        outline()

    pipeline()


def test_without_an_api_key_the_client_writes_to_the_local_store(respan, store):
    assert respan.local_store == store


def test_spans_are_read_back_as_a_tree_of_parents_and_children(respan, store):
    _pipeline(respan)
    respan.flush()

    (stored,) = recent_traces(store)

    (root,) = stored.roots
    assert root.name == "content_pipeline.workflow"
    assert root.parent_span_id is None
    (child,) = root.children
    assert child.name == "generate_outline.task"
    assert child.parent_span_id == root.span_id
    (grandchild,) = child.children
    assert grandchild.name == "completion"
    assert grandchild.parent_span_id == child.span_id
    assert grandchild.children == []
    assert {span.trace_id for span in stored.spans} == {stored.trace_id}
    assert len(stored.spans) == 3


def test_stored_spans_carry_respan_keys_and_their_duration(respan, store):
    _pipeline(respan)
    respan.flush()

    (stored,) = recent_traces(store)

    llm = next(span for span in stored.spans if span.name == "completion")
    assert llm.attributes["gen_ai.request.model"] == "gpt-4.1-nano"
    assert llm.attributes["gen_ai.usage.prompt_tokens"] == 9
    assert llm.attributes["traceloop.entity.path"] == "generate_outline"
    assert llm.duration_ms == 12.5


def test_traces_come_back_newest_first(respan, store):
    for name in ("first", "second", "third"):
        workflow(name=name)(lambda: None)()
    respan.flush()

    names = [stored.roots[0].name for stored in recent_traces(store)]

    assert names == ["third.workflow", "second.workflow", "first.workflow"]


def test_the_limit_keeps_only_the_newest_traces(respan, store):
    for name in ("first", "second", "third"):
        workflow(name=name)(lambda: None)()
    respan.flush()

    names = [stored.roots[0].name for stored in recent_traces(store, limit=2)]

    assert names == ["third.workflow", "second.workflow"]


def test_a_failed_span_is_stored_as_an_error_with_its_message(respan, store):
    @workflow(name="fails")
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    respan.flush()

    (stored,) = recent_traces(store)
    (span,) = stored.spans
    assert span.is_error is True
    assert span.status_message == "ValueError: boom"
    assert [event["name"] for event in span.events] == ["exception"]


def test_a_missing_store_has_no_traces_and_is_not_created(tmp_path):
    path = tmp_path / "missing.sqlite3"

    assert recent_traces(str(path)) == []
    assert not path.exists()


# `respan traces`


def test_the_traces_command_prints_span_names_as_a_tree_with_durations(respan, store, capsys):
    _pipeline(respan)
    respan.flush()

    assert main(["traces", "--store", store]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"trace [0-9a-f]{32}  .*  \(3 spans\)", lines[0])
    assert re.match(r"└─ content_pipeline\.workflow  \[workflow\]  \d+\.\d ms", lines[1])
    assert re.match(r"   └─ generate_outline\.task  \[task\]  \d+\.\d ms", lines[2])
    assert lines[3].startswith("      └─ completion  [chat]  12.5 ms")


def test_the_traces_command_prints_model_tokens_customer_and_thread(respan, store, capsys):
    with propagate_attributes(customer_identifier="user_123", thread_identifier="conv_001"):
        _pipeline(respan)
    respan.flush()

    main(["traces", "--store", store])

    out = capsys.readouterr().out
    llm_line = next(line for line in out.splitlines() if "completion" in line)
    assert "model=gpt-4.1-nano" in llm_line
    assert "tokens=9+11" in llm_line
    assert "customer=user_123" in llm_line
    assert "thread=conv_001" in llm_line
    workflow_line = next(line for line in out.splitlines() if "content_pipeline" in line)
    assert "customer=user_123" in workflow_line
    assert "model=" not in workflow_line


def test_the_traces_command_marks_a_failed_span_as_error(respan, store, capsys):
    @task(name="flaky")
    def flaky():
        raise TimeoutError("provider timed out")

    @workflow(name="w")
    def run():
        try:
            flaky()
        except TimeoutError:
            pass

    run()
    respan.flush()

    main(["traces", "--store", store])

    lines = capsys.readouterr().out.splitlines()
    task_line = next(line for line in lines if "flaky.task" in line)
    workflow_line = next(line for line in lines if "w.workflow" in line)
    assert task_line.endswith("ERROR TimeoutError: provider timed out")
    assert "ERROR" not in workflow_line


def test_the_traces_command_prints_the_newest_trace_first_and_honours_limit(
    respan, store, capsys
):
    for name in ("first", "second", "third"):
        workflow(name=name)(lambda: None)()
    respan.flush()

    main(["traces", "--store", store, "--limit", "2"])

    roots = [line for line in capsys.readouterr().out.splitlines() if line.startswith("└─")]
    assert [line.split()[1] for line in roots] == ["third.workflow", "second.workflow"]


def test_the_traces_command_says_no_traces_for_a_missing_store(tmp_path, capsys):
    path = str(tmp_path / "missing.sqlite3")

    assert main(["traces", "--store", path]) == 0

    assert capsys.readouterr().out == f"No traces in {path} yet.\n"


def test_the_traces_command_says_no_traces_for_an_empty_store(tmp_path, capsys):
    path = tmp_path / "empty.sqlite3"
    path.touch()

    assert main(["traces", "--store", str(path)]) == 0

    assert capsys.readouterr().out.startswith("No traces")


def test_the_store_file_is_readable_by_its_owner_only(store):
    client = Respan(local_store=store)
    with client.tracer.start_as_current_span("one"):
        pass
    client.flush()
    client.shutdown()

    assert os.stat(store).st_mode & 0o777 == 0o600


def test_the_traces_command_names_a_file_that_is_not_a_trace_store(tmp_path, capsys):
    other = tmp_path / "app.sqlite3"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE users (id INTEGER)")
    connection.commit()
    connection.close()

    assert main(["traces", "--store", str(other)]) == 1
    assert f"{other} is not a Respan trace store" in capsys.readouterr().err


def test_the_traces_command_escapes_control_characters(store, capsys):
    client = Respan(local_store=store)
    client.tracer.start_span("GET /\x1b[31mred\x1b]0;title\x07").end()
    client.shutdown()

    main(["traces", "--store", store])

    output = capsys.readouterr().out
    assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b[31mred" in output
