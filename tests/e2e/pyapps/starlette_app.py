"""The Starlette application of the end-to-end tests (``trioweb --asgi starlette_app:app``)."""

import contextlib
import hashlib
import os

import trio
from starlette.applications import Starlette
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from starlette.routing import Route

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.asynccontextmanager
async def lifespan(app):
    marker = os.environ.get("STARLETTE_TEST_MARKER")
    if os.environ.get("STARLETTE_FAIL_STARTUP"):
        raise RuntimeError("the database is not there")
    yield {"started": "yes"}
    if marker:
        with open(marker, "w") as f:
            f.write("shut down")


async def hello(request):
    started = getattr(request.state, "started", "no")  # "no" when mounted by --class: no lifespan then
    return PlainTextResponse(f"Starlette on {request.scope['root_path'] or '/'} started={started} "
                             f"url={request.url_for('hello')}")


async def upload(request):
    digest = hashlib.sha256()
    size = 0
    pieces = 0
    async for piece in request.stream():
        digest.update(piece)
        size += len(piece)
        pieces += 1
    return PlainTextResponse(f"{size} {digest.hexdigest()} {pieces}")


async def stream(request):
    async def lines():
        for i in range(int(request.query_params.get("n", "5"))):
            yield f"line {i}\n"
            await trio.sleep(0.01)

    return StreamingResponse(lines(), media_type="text/plain")


async def file(request):
    return FileResponse(os.path.join(HERE, "payload.bin"))


async def go(request):
    return RedirectResponse(request.url_for("hello"))


app = Starlette(routes=[
    Route("/", hello, name="hello"),
    Route("/upload", upload, methods=["POST"]),
    Route("/stream", stream),
    Route("/file", file),
    Route("/go", go),
], lifespan=lifespan)
