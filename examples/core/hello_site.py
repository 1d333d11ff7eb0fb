"""The guide's first example, "Serving a Site by hand": one resource, one port.

Run: python examples/core/hello_site.py [PORT]   then open http://127.0.0.1:PORT/
"""

import sys

import trio

from trioweb.resource import Resource
from trioweb.server import Site, serve


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"<html><body>Hello, world!</body></html>"


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(Hello()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
