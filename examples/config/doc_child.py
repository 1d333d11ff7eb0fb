"""The guide's "Advanced Configuration", "Adding Children": ``putChild``
overrides the file system, here to publish the installed packages'
documentation at ``/doc`` and a directory of CGI scripts at ``/cgi-bin``,
next to the site's own files.

Twisted: ``root = static.File("/var/www/htdocs")``,
``root.putChild("doc", static.File("/usr/share/doc"))``,
``root.putChild("cgi-bin", twcgi.CGIDirectory("/var/www/cgi-bin"))``, then
``reactor.listenTCP(80, server.Site(root))``.

Run: trioweb --config examples/config/doc_child.py   (or trioweb -y ...)
Then: curl http://127.0.0.1:8080/cgi-bin/hello.cgi
"""

import os

from trioweb import static, twcgi

EXAMPLES = os.path.join(os.path.dirname(__file__), "..")
HTDOCS = os.path.join(EXAMPLES, "htdocs")  # the guide's /var/www/htdocs
CGI_BIN = os.path.join(EXAMPLES, "cgi", "htdocs", "cgi-bin")  # the guide's /var/www/cgi-bin

resource = static.File(HTDOCS)
resource.putChild(b"doc", static.File("/usr/share/doc"))
resource.putChild(b"cgi-bin", twcgi.CGIDirectory(CGI_BIN))

# reactor.listenTCP(80, ...) would be  listen = ["tcp:80"]  here; without it,
# trioweb listens where --listen says (tcp:8080 by default).
