"""The manual "slave": a personal server publishing a small tree on a socket.

Run: python examples/distrib/slave.py unix:/tmp/slave.sock   (or tcp:8790:interface=127.0.0.1)
Then a master (master.py) mounts it with ResourceSubscription.
"""

import os
import sys

import trio

from trioweb.distrib import ResourcePublisher, serve_publisher
from trioweb.endpoints import open_listeners, parse_endpoint
from trioweb.resource import Resource
from trioweb.server import Site
from trioweb.static import Data


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return (b"<html><body>Hello from the slave (pid %d), published at %s</body></html>"
                % (os.getpid(), request.prePathURL()))


def make_root() -> Resource:
    root = Resource()
    root.putChild(b"", Hello())
    root.putChild(b"data", Data(b"slave data", "text/plain"))
    return root


async def main(endpoint: str) -> None:
    async with open_listeners([parse_endpoint(endpoint)]) as listeners:
        # No allowed_uids: this example lets any local user in; trioweb --personal
        # restricts peers to root, the user and www-data.
        await serve_publisher(ResourcePublisher(Site(make_root())), listeners)


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "unix:/tmp/trioweb-slave.sock")
