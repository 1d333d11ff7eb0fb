"""The guide's simple forward proxy (Twisted's ``proxy.py`` example): point a browser (or
``curl -x``) at it.

Twisted's example makes a ``proxy.Proxy`` channel per connection; here a
``Proxy`` resource is the root. Unlike Twisted's, it forwards only to the
hosts and ports you allow (``PROXY_ALLOW``: ``HOST:PORT`` entries separated
by spaces): never run an open proxy. CONNECT tunnels (https through the
proxy) are off unless ``PROXY_CONNECT_PORTS`` lists the ports they may reach
(on the allowed hosts), e.g. ``443``.

Run: PROXY_ALLOW="example.com:80 127.0.0.1:8000" trioweb --config examples/config/forward_proxy.py
Then: curl -x http://127.0.0.1:8080 http://example.com/
"""

import os

from trioweb.proxy import Proxy

allowed = [entry.rpartition(":") for entry in os.environ.get("PROXY_ALLOW", "127.0.0.1:8000").split()]

resource = Proxy(allowed_hosts={host for host, _, _ in allowed}, allowed_ports={int(port) for _, _, port in allowed},
                 connect_ports={int(port) for port in os.environ.get("PROXY_CONNECT_PORTS", "").split()})
