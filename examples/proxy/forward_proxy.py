"""The guide's simple forward proxy: point a browser (or curl -x) at it.

Twisted's example makes a Proxy channel per connection; here a ``Proxy``
resource is the root of a Site. Unlike Twisted's, it forwards only to the
hosts and ports you allow: never run an open proxy.

Run: python examples/proxy/forward_proxy.py 8080 example.com:80 127.0.0.1:8000
Then: curl -x http://127.0.0.1:8080 http://example.com/
"""

import sys

import trio

from trioweb.proxy import Proxy
from trioweb.server import Site, serve


async def main(port: int, allowed: list[str]) -> None:
    hosts = {entry.rsplit(":", 1)[0] for entry in allowed}
    ports = {int(entry.rsplit(":", 1)[1]) for entry in allowed}
    site = Site(Proxy(allowed_hosts=hosts, allowed_ports=ports))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(site, listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2:])
