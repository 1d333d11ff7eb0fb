"""The tutorial's "Splitting With Reverse Proxy": one part of the site
(``/foo/``) is served by another process, Bannerfish running standalone
(examples/proxy/bannerfish.py), next to pages of the main site's own.

Twisted: ``root.putChild('foo', proxy.ReverseProxyResource('localhost', 81, '/foo/'))``.
The port is Bannerfish's, 81 as in the tutorial unless ``BANNERFISH_PORT`` says otherwise.

Run: python examples/proxy/bannerfish.py 8081
     BANNERFISH_PORT=8081 trioweb --config examples/config/splitting.py
Then: curl http://127.0.0.1:8080/foo/   (a banner, from the Bannerfish process)
"""

import os

from trioweb.proxy import ReverseProxyResource
from trioweb.resource import Resource
from trioweb.static import Data

BANNERFISH_PORT = int(os.environ.get("BANNERFISH_PORT", "81"))

resource = Resource()
resource.putChild(b"", Data(b'<html><body><h1>Main site</h1><iframe src="foo/"></iframe></body></html>',
                            "text/html"))
resource.putChild(b"foo", ReverseProxyResource("localhost", BANNERFISH_PORT, b"/foo/"))
