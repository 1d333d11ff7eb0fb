"""Bannerfish: a banner server on TCP (the slave) behind a site that shows it (the master).

The slave keeps a rotating list of banners and publishes it over TCP, as a
personal server may; the master mounts it at /banner/ with the guide's
``ResourceSubscription(host, port)`` signature, next to its own pages.

Run: python examples/distrib/bannerfish.py slave 8791
     python examples/distrib/bannerfish.py master 8080 8791
"""

import itertools
import sys
from html import escape

import trio

from trioweb.distrib import ResourcePublisher, ResourceSubscription, serve_publisher
from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.static import Data

BANNERS = ["Bannerfish: the fish with a flag", "Heniochus acuminatus says hello", "Ask about our reef tours"]


class Banner(Resource):
    """Each request shows the next banner."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.banners = itertools.cycle(BANNERS)

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return f'<div class="banner">{escape(next(self.banners))}</div>'.encode()


async def slave(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve_publisher(ResourcePublisher(Site(Banner())), listeners)


async def master(port: int, slave_port: int) -> None:
    root = Resource()
    root.putChild(b"", Data(b'<html><body><h1>Reef news</h1><iframe src="banner/"></iframe></body></html>',
                            "text/html"))
    root.putChild(b"banner", ResourceSubscription("127.0.0.1", slave_port))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(root), listeners)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "slave":
        trio.run(slave, int(sys.argv[2]))
    else:
        trio.run(master, int(sys.argv[2]), int(sys.argv[3]))
