"""The guide's "Advanced Configuration", "Adding Children" (first example):
``putChild`` overrides the file system, here to publish the installed
packages' documentation at ``/doc`` next to the site's own files.

Twisted: ``root = static.File("/var/www/htdocs")``,
``root.putChild("doc", static.File("/usr/share/doc"))``, then
``reactor.listenTCP(80, server.Site(root))``.

Run: trioweb --config examples/config/doc_child.py   (or trioweb -y ...)
"""

import os

from trioweb import static

HTDOCS = os.path.join(os.path.dirname(__file__), "..", "htdocs")  # the guide's /var/www/htdocs

resource = static.File(HTDOCS)
resource.putChild(b"doc", static.File("/usr/share/doc"))

# reactor.listenTCP(80, ...) would be  listen = ["tcp:80"]  here; without it,
# trioweb listens where --listen says (tcp:8080 by default).
