"""The guide's "Advanced Configuration" cgi-bin site, a configuration file:
static files from one directory, CGI scripts from another mounted at
/cgi-bin (examples/config/doc_child.py is the same with /doc as well).

Run: trioweb --config examples/cgi/cgi_bin.py
      (serves examples/cgi/htdocs, with examples/cgi/htdocs/cgi-bin as /cgi-bin)
"""

import os

from trioweb import static, twcgi

HTDOCS = os.path.join(os.path.dirname(__file__), "htdocs")

resource = static.File(HTDOCS)
resource.putChild(b"cgi-bin", twcgi.CGIDirectory(os.path.join(HTDOCS, "cgi-bin")))
