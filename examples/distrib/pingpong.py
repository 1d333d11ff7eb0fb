"""Two virtual hosts, each forwarded to its own backend: ping and pong.

    python examples/distrib/pingpong.py backend ping unix:/tmp/ping.sock
    python examples/distrib/pingpong.py backend pong unix:/tmp/pong.sock
    python examples/distrib/pingpong.py front 8080 /tmp/ping.sock /tmp/pong.sock

Then http://ping.localhost:8080/ and http://pong.localhost:8080/ (or curl with
-H 'Host: ping') reach different processes through one front; each page
links to the other.
"""

import sys

import trio

from trioweb.distrib import ResourcePublisher, ResourceSubscription, serve_publisher
from trioweb.endpoints import open_listeners, parse_endpoint
from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.vhost import NameVirtualHost


class Page(Resource):
    isLeaf = True

    def __init__(self, name: str, other: str) -> None:
        super().__init__()
        self.name, self.other = name, other

    def render_GET(self, request):
        return (f'<html><body><h1>{self.name}</h1><a href="http://{self.other}.localhost/">'
                f"{self.other}</a></body></html>").encode()


async def backend(name: str, endpoint: str) -> None:
    other = "pong" if name == "ping" else "ping"
    async with open_listeners([parse_endpoint(endpoint)]) as listeners:
        await serve_publisher(ResourcePublisher(Site(Page(name, other))), listeners)


async def front(port: int, ping_socket: str, pong_socket: str) -> None:
    root = NameVirtualHost()
    for name, path in (("ping", ping_socket), ("pong", pong_socket)):
        root.addHost(name, ResourceSubscription("unix", path))
        root.addHost(f"{name}.localhost", ResourceSubscription("unix", path))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(root), listeners)


if __name__ == "__main__":
    if sys.argv[1] == "backend":
        trio.run(backend, sys.argv[2], sys.argv[3])
    else:
        trio.run(front, int(sys.argv[2]), sys.argv[3], sys.argv[4])
