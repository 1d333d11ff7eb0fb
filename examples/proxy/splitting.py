"""The tutorial's Bannerfish behind a reverse proxy, and "Splitting With Reverse Proxy".

Bannerfish runs standalone, as its own web server; the main site mounts it
with ``root.putChild(b'foo', ReverseProxyResource('localhost', 81, b'/foo/'))``
as the tutorial does (with the ports you give), next to pages of its own.

Run: python examples/proxy/splitting.py bannerfish 8081
     python examples/proxy/splitting.py main 8080 8081
Then: curl http://127.0.0.1:8080/foo/   (a banner, from the Bannerfish process)
"""

import itertools
import os
import sys
from html import escape

import trio

from trioweb.proxy import ReverseProxyResource
from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.static import Data

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


def main_site(bannerfish_port: int) -> Resource:
    root = Resource()
    root.putChild(b"", Data(b'<html><body><h1>Main site</h1><iframe src="foo/"></iframe></body></html>',
                            "text/html"))
    root.putChild(b"foo", ReverseProxyResource("localhost", bannerfish_port, b"/foo/"))
    return root


async def run(port: int, root: Resource) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(root), listeners)


if __name__ == "__main__":
    if sys.argv[1] == "bannerfish":
        trio.run(run, int(sys.argv[2]), Bannerfish())
    else:
        trio.run(run, int(sys.argv[2]), main_site(int(sys.argv[3])))
