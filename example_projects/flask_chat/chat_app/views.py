from flask import Blueprint, Response, request, stream_with_context
from flask_login import login_required

from . import llm
from .tasks import summarize_conversation

blueprint = Blueprint("chat", __name__)


@blueprint.post("/chat/<int:conversation_id>/")
@login_required
def chat(conversation_id: int):
    message = (request.get_json(silent=True) or {}).get("message")
    if not isinstance(message, str):
        return {"error": 'send JSON: {"message": "..."}'}, 400

    answer = llm.reply([{"role": "user", "content": message}])
    result = summarize_conversation.delay(conversation_id, message, answer)
    return {"reply": answer, "summary_task": result.id}


@blueprint.post("/chat/<int:conversation_id>/stream/")
@login_required
def chat_stream(conversation_id: int):
    """The reply streamed to the browser as the LLM produces it."""
    message = (request.get_json(silent=True) or {}).get("message", "")
    messages = [{"role": "user", "content": message}]
    return Response(stream_with_context(llm.streamed_reply(messages)), mimetype="text/plain")


@blueprint.get("/health/")
def health():
    return "ok"
