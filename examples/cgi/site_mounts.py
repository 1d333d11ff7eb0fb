"""CGI mounted into a Python site, as twistedmatrix.com's own configuration
did, a configuration file: whole CGI directories (Mailman's cgi-bin) and
single scripts placed in the resource tree with putChild (the whole of that
configuration is examples/config/twistedmatrix_com.py).

Run: trioweb --config examples/cgi/site_mounts.py
Then: /mailman/listinfo, /mailman/listinfo/twisted-python, /status, /cgi-bin/hello.cgi
"""

import os

from trioweb import static, twcgi

HERE = os.path.dirname(__file__)

resource = static.File(os.path.join(HERE, "htdocs"))
resource.putChild(b"mailman", twcgi.CGIDirectory(os.path.join(HERE, "cgi-bin", "mailman")))
resource.putChild(b"status", twcgi.CGIScript(os.path.join(HERE, "cgi-bin", "nph-status.cgi")))
resource.putChild(b"cgi-bin", twcgi.CGIDirectory(os.path.join(HERE, "htdocs", "cgi-bin")))
