import asyncio
import time

from django.http import HttpResponse, StreamingHttpResponse

from respan_core import task


class ViewFailed(Exception):
    pass


def hello(request):
    return HttpResponse("hello")


def item(request, pk):
    return HttpResponse(f"item {pk}")


def me(request):
    return HttpResponse(str(request.user.pk) if request.user.is_authenticated else "anonymous")


def boom(request):
    raise ViewFailed("the view failed")


def unavailable(request):
    return HttpResponse("try later", status=503)


handled_requests: list = []


def kept(request):
    """Keeps the request, to look at once the response is sent."""
    handled_requests.append((request, "_respan_span" in vars(request)))
    return HttpResponse("kept")


streamed_at_ns: list[int] = []


def stream(request):
    def chunks():
        for i in range(3):
            yield f"chunk {i}\n"
        streamed_at_ns.append(time.time_ns())

    return StreamingHttpResponse(chunks())


@task(name="inner_step")
def inner_step():
    return "done"


def work(request):
    return HttpResponse(inner_step())


def stream_work(request):
    def chunks():
        yield "start\n"
        _ = request.user.is_authenticated  # the user is first loaded while the body streams
        yield inner_step() + "\n"

    return StreamingHttpResponse(chunks())


async def async_me(request):
    user = await request.auser()
    return HttpResponse(str(user.pk) if user.is_authenticated else "anonymous")


@task(name="async_step")
async def async_step(n):
    return n


async def fan_out(request):
    """Spans from asyncio.gather children and from sync_to_async."""
    from asgiref.sync import sync_to_async

    results = await asyncio.gather(async_step(1), async_step(2))
    done = await sync_to_async(inner_step)()
    return HttpResponse(f"{results} {done}")


def download(request):
    from django.http import FileResponse

    return FileResponse(open(__file__, "rb"))
