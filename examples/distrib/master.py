"""The manual "master": a front that mounts a slave with ResourceSubscription.

Run: python examples/distrib/master.py PORT unix:/tmp/slave.sock
Then /slave/ is answered by the slave; / by the master itself.
"""

import sys

import trio

from trioweb.distrib import ResourceSubscription
from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.static import Data


async def main(port: int, slave: str) -> None:
    root = Resource()
    root.putChild(b"", Data(b'<html><body>The master. <a href="slave/">To the slave</a></body></html>',
                            "text/html"))
    root.putChild(b"slave", ResourceSubscription(slave))  # "unix:PATH" or "tcp:HOST:PORT"
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(root), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2])
