import json

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_POST

from . import llm
from .tasks import summarize_conversation


@login_required
@require_POST
def chat(request, conversation_id: int):
    try:
        message = json.loads(request.body)["message"]
    except (ValueError, KeyError, TypeError):
        return HttpResponseBadRequest('send JSON: {"message": "..."}')

    answer = llm.reply([{"role": "user", "content": message}])
    result = summarize_conversation.delay(conversation_id, message, answer)
    return JsonResponse({"reply": answer, "summary_task": result.id})


@login_required
@require_POST
async def chat_async(request, conversation_id: int):
    """The same chat as an async view: no summary task, just the reply."""
    try:
        message = json.loads(request.body)["message"]
    except (ValueError, KeyError, TypeError):
        return HttpResponseBadRequest('send JSON: {"message": "..."}')

    answer = await llm.areply([{"role": "user", "content": message}])
    return JsonResponse({"reply": answer})


@login_required
@require_POST
async def chat_stream(request, conversation_id: int):
    """The reply streamed as the LLM produces it (async: served best under an ASGI server)."""
    try:
        message = json.loads(request.body)["message"]
    except (ValueError, KeyError, TypeError):
        return HttpResponseBadRequest('send JSON: {"message": "..."}')

    messages = [{"role": "user", "content": message}]
    return StreamingHttpResponse(llm.astreamed_reply(messages), content_type="text/plain")


def health(request):
    return HttpResponse("ok")
