"""The guide's VHostMonster pair ("Using VHostMonster"), the front
half: a public name answered by a ``NameVirtualHost`` and proxied to an
inner server's ``/vhost.rpy/http/PUBLIC/``, so that the inner pages build
their links and redirects with the public address, not the inner one.

The inner server is a plain ``trioweb --path examples/proxy/htdocs`` with
the guide's ``vhost.rpy`` in it (listening on ``INNER_PORT``, 8538 by
default). ``PUBLIC_ADDRESS`` is the name (and port) clients use,
``www.example.com`` by default.

Twisted: ``vhost.rpy`` is ``resource = vhost.VHostMonsterResource()``; the
front, Apache in the guide, forwards to ``/vhost.rpy/http/www.example.com:80/``.

Run: trioweb --path examples/proxy/htdocs --listen tcp:8538:interface=127.0.0.1
     PUBLIC_ADDRESS=www.example.com:8080 trioweb --config examples/config/vhost_monster_front.py
Then: curl -H 'Host: www.example.com:8080' http://127.0.0.1:8080/where.rpy
"""

import os

from trioweb.proxy import ReverseProxyResource
from trioweb.vhost import NameVirtualHost

PUBLIC_ADDRESS = os.environ.get("PUBLIC_ADDRESS", "www.example.com")
INNER_PORT = int(os.environ.get("INNER_PORT", "8538"))

resource = NameVirtualHost()
resource.addHost(PUBLIC_ADDRESS.partition(":")[0].encode(),
                 ReverseProxyResource("127.0.0.1", INNER_PORT, b"/vhost.rpy/http/" + PUBLIC_ADDRESS.encode()))
