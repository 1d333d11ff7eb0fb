"""The guide's "Session basics": show the session id, and expire it.

Run: python examples/core/session_basics.py [PORT]
then open http://127.0.0.1:PORT/ (twice: the same id) and /expire (then a new one).
"""

import sys

import trio

from trioweb.resource import Resource
from trioweb.server import Site, serve


class ShowSession(Resource):
    def render_GET(self, request):
        return b"Your session id is: " + request.getSession().uid


class ExpireSession(Resource):
    def render_GET(self, request):
        request.getSession().expire()
        return b"Your session has been expired."


resource = ShowSession()
resource.putChild(b"", resource)
resource.putChild(b"expire", ExpireSession())


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(resource), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
