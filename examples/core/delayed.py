"""The guide's "Asynchronous Responses": render returns NOT_DONE_YET and the
response is written and finished later, by a task in the request's nursery
(where Twisted would use reactor.callLater).

Run: python examples/core/delayed.py [PORT]   (each page takes a second)
"""

import sys

import trio

from trioweb.resource import NOT_DONE_YET, Resource
from trioweb.server import Site, serve


class DelayedResource(Resource):
    isLeaf = True

    def render_GET(self, request):
        async def finish_later():
            await trio.sleep(1)
            request.write(b"<html><body>Sorry to keep you waiting.</body></html>")
            request.finish()

        request.start_soon(finish_later)
        return NOT_DONE_YET


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(DelayedResource()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
