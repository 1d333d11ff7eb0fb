"""The guide's VHostMonster pair, the front half: a public name, proxied to an inner server.

The inner server is a plain ``trioweb --path examples/proxy/htdocs`` with
the guide's ``vhost.rpy`` in it. This front answers for ``www.example.com``
(a NameVirtualHost) and forwards to the inner server's
``/vhost.rpy/http/www.example.com:PORT/``, so that the inner pages build
their links and redirects with the public address, not the inner one.

Run: trioweb --path examples/proxy/htdocs --listen tcp:8538:interface=127.0.0.1
     python examples/proxy/vhost_front.py 8080 8538
Then: curl -H 'Host: www.example.com:8080' http://127.0.0.1:8080/where.rpy
"""

import sys

import trio

from trioweb.proxy import ReverseProxyResource
from trioweb.server import Site, serve
from trioweb.vhost import NameVirtualHost


async def main(port: int, inner_port: int) -> None:
    hosts = NameVirtualHost()
    public = b"www.example.com:%d" % port
    hosts.addHost(b"www.example.com", ReverseProxyResource("127.0.0.1", inner_port, b"/vhost.rpy/http/" + public))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(hosts), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
