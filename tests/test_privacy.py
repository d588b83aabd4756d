"""What must never leave the process, checked in the bytes the real exporter posts."""

import litellm

from respan_core import Respan, propagate_attributes, wire, workflow

KEY = "respan-privacy-key-77"
QUESTION = "my private question 4242"


def _post_bodies(ingest, trace_id):
    return [p.body for p in ingest.posts if any(s.trace_id == trace_id for s in p.spans())]


def _run(ingest, traced_litellm, name, **completion_options):
    client = Respan(api_key=KEY, base_url=ingest.base_url)
    client.instrument(traced_litellm)

    @workflow(name=name)
    def handle(question):
        with propagate_attributes(customer_identifier="u-private", thread_identifier="t-1"):
            response = litellm.completion(
                model="gpt-4.1-nano",
                messages=[{"role": "user", "content": question}],
                **completion_options,
            )
            return response.choices[0].message.content

    answer = handle(QUESTION)
    client.flush()
    client.shutdown()
    spans = [s for s in ingest.spans() if s.attributes.get(wire.WORKFLOW_NAME) == name]
    return answer, spans


def test_with_content_capture_off_no_prompt_or_completion_is_exported(
    ingest, llm, traced_litellm, monkeypatch
):
    monkeypatch.setenv("RESPAN_TRACE_CONTENT", "0")
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")

    answer, spans = _run(ingest, traced_litellm, "content_off")

    assert answer == f"You said: {QUESTION}"
    (llm_span,) = [s for s in spans if s.name == "completion"]
    for body in _post_bodies(ingest, llm_span.trace_id):
        assert QUESTION.encode() not in body
        assert b"You said" not in body
    assert llm_span.attributes["gen_ai.request.model"] == "gpt-4.1-nano"
    assert llm_span.attributes["gen_ai.usage.prompt_tokens"] > 0
    assert llm_span.attributes["gen_ai.usage.completion_tokens"] > 0
    assert llm_span.attributes[wire.CUSTOMER_IDENTIFIER] == "u-private"


def test_keys_passed_to_litellm_and_the_respan_key_are_never_exported(
    ingest, llm, traced_litellm, monkeypatch
):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)

    _, spans = _run(
        ingest,
        traced_litellm,
        "keys_passed",
        api_key="sk-passed-in-9911",
        extra_headers={"Authorization": "Bearer hdr-secret-5533", "Cookie": "session=c00k1e"},
    )

    (llm_span,) = [s for s in spans if s.name == "completion"]
    bodies = _post_bodies(ingest, llm_span.trace_id)
    assert bodies
    for body in bodies:
        for secret in (b"sk-passed-in-9911", b"hdr-secret-5533", b"c00k1e", KEY.encode()):
            assert secret not in body
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer hdr-secret-5533"
