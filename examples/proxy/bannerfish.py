"""The tutorial's Bannerfish, standalone: its own web server, the part of
the site that "Splitting With Reverse Proxy" serves from another process.
The main site is the configuration file examples/config/splitting.py, which
mounts it with ``root.putChild(b'foo', ReverseProxyResource('localhost', 81, b'/foo/'))``.

Run: python examples/proxy/bannerfish.py 8081
     BANNERFISH_PORT=8081 trioweb --config examples/config/splitting.py
Then: curl http://127.0.0.1:8080/foo/   (a banner, from the Bannerfish process)
"""

import itertools
import os
import sys
from html import escape

import trio

from trioweb.resource import Resource
from trioweb.server import Site, serve

SLOGANS = ["Bannerfish swims standalone", "Proxied, not embedded", "One process per part of the site"]


class Bannerfish(Resource):
    """A standalone banner server: each page is the next slogan."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.slogans = itertools.cycle(SLOGANS)

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (f'<p class="banner" data-pid="{os.getpid()}" data-path="{escape(request.path.decode())}">'
                f"{escape(next(self.slogans))}</p>").encode()


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(Bannerfish()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
