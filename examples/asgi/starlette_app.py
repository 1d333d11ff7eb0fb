"""A Starlette application served by ``trioweb --asgi starlette_app:app``
(run from this directory). Starlette runs on trio through anyio: no thread,
no second event loop."""

import contextlib

import trio
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"started": trio.current_time()}  # each request sees it in request.state


async def hello(request):
    return PlainTextResponse("Hello from Starlette on trio!")


async def echo(request):
    size = 0
    async for piece in request.stream():  # the body, as it arrives
        size += len(piece)
    return JSONResponse({"received": size, "root_path": request.scope["root_path"]})


async def count(request):
    async def lines():
        for i in range(5):
            yield f"{i}\n"
            await trio.sleep(0.1)

    return StreamingResponse(lines(), media_type="text/plain")


app = Starlette(routes=[Route("/", hello), Route("/echo", echo, methods=["POST"]), Route("/count", count)],
                lifespan=lifespan)
