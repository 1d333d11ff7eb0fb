"""The guide's reverse proxy as a bare program: a Site on a
``ReverseProxyResource``, served without the ``trioweb`` command (no access
log, no signal handling), which is what scripts/bench_proxy.py measures and
the streaming tests drive. The same as a configuration file, the way it is
deployed: examples/config/reverse_proxy.py.

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
