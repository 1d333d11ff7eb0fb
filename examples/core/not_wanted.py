"""The guide's "Interrupted Responses" ("Knowing when we're not wanted").

The response takes five seconds. If the client gives up first,
``await request.notifyFinish()`` raises ConnectionLost, and the request's
nursery is cancelled, so the pending work stops (Twisted cancels the delayed
call in an errback; here cancellation does it).

Run: python examples/core/not_wanted.py [PORT]   then open a page and close it quickly.
"""

import sys

import trio

from trioweb.http import ConnectionLost
from trioweb.resource import NOT_DONE_YET, Resource
from trioweb.server import Site, serve


class DelayedResource(Resource):
    isLeaf = True

    def render_GET(self, request):
        async def respond_later():
            try:
                await trio.sleep(5)
            except trio.Cancelled:
                print("work cancelled", flush=True)
                raise
            request.write(b"<html><body>Sorry to keep you waiting.</body></html>")
            request.finish()

        async def watch():
            try:
                await request.notifyFinish()
                print("response delivered", flush=True)
            except ConnectionLost:
                print("client went away", flush=True)

        request.start_soon(respond_later)
        request.start_soon(watch)
        return NOT_DONE_YET


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(DelayedResource()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
