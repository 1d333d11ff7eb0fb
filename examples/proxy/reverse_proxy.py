"""The guide's reverse proxy: a whole site served by another server.

Twisted's example proxies www.yahoo.com; this one proxies any HTTP server
you name (a local trioweb in the tests). The upstream's pages come back as
if they were this server's; connections to it are kept alive and reused.

Run: python examples/proxy/reverse_proxy.py 8080 127.0.0.1 8000
"""

import sys

import trio

from trioweb.proxy import ReverseProxyResource
from trioweb.server import Site, serve


async def main(port: int, upstream_host: str, upstream_port: int) -> None:
    site = Site(ReverseProxyResource(upstream_host, upstream_port, b""))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(site, listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
