"""The guide's reverse proxy (Twisted's ``reverse-proxy.py`` example): a whole site served
by another server. Twisted's example proxies www.yahoo.com; this one the
HTTP server ``UPSTREAM`` names (``HOST:PORT``, by default 127.0.0.1:8000).
The upstream's pages come back as if they were this server's; connections
to it are kept alive and reused.

Twisted: ``site = server.Site(proxy.ReverseProxyResource('www.yahoo.com', 80, b''))``.

Run: UPSTREAM=127.0.0.1:8000 trioweb --config examples/config/reverse_proxy.py
"""

import os

from trioweb.proxy import ReverseProxyResource

UPSTREAM_HOST, _, UPSTREAM_PORT = os.environ.get("UPSTREAM", "127.0.0.1:8000").rpartition(":")

resource = ReverseProxyResource(UPSTREAM_HOST, int(UPSTREAM_PORT), b"")
