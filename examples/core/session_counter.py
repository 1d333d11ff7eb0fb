"""The guide's "Storing objects in the session": a visit counter per session.

Twisted's version registers a zope adapter (``ICounter(session)``); here the
session's components do the same job without zope: ``getComponent`` gives
the counter stored for the key, ``setComponent`` stores one.

Run: python examples/core/session_counter.py [PORT]   then reload http://127.0.0.1:PORT/
"""

import sys

import trio

from trioweb.resource import Resource
from trioweb.server import Site, serve


class Counter:
    """An int value which counts up once per page view."""

    def __init__(self):
        self.value = 0


class CounterResource(Resource):
    isLeaf = True

    def render_GET(self, request):
        session = request.getSession()
        counter = session.getComponent(Counter)
        if counter is None:
            counter = Counter()
            session.setComponent(Counter, counter)
        counter.value += 1
        return b"Visit #%d for you!" % counter.value


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(CounterResource()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
