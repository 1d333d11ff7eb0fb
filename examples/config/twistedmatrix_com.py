"""The tutorial's twistedmatrix.com configuration: a static site whose
front page is a CGI script (``index.cgi`` among the ``indexNames``), CGI
directories mounted into the tree (Mailman's cgi-bin, a ``cgi-bin``), the
users' sites under ``/users`` and at ``/~name/``, the documentation at
``/doc``, run as an unprivileged user once port 80 is bound.

Twisted's configuration: a ``static.File`` root with ``indexNames``
including ``index.cgi`` and ``.cgi`` files run by ``twcgi.CGIScript``,
``putChild('mailman', twcgi.CGIDirectory(...))`` and other ``CGIDirectory``
mounts, ``putChild('users', distrib.UserDirectory())``,
``putChild('doc', ...)``, the root wrapped in
``RewriterResource(root, rewrite.tildeToUsers)``, and ``uid``/``gid``.

As in Twisted, ``/users/alice/`` is alice's site, and ``tildeToUsers``
rewrites ``/~alice/...`` to it. The CGI scripts run as the server does
(www-data), with the checks of docs/cgi.md.

Run (as root): trioweb --config examples/config/twistedmatrix_com.py --listen tcp:80
"""

import os

from trioweb import distrib, rewrite, script, static, twcgi

EXAMPLES = os.path.join(os.path.dirname(__file__), "..")

root = static.File(os.path.join(os.path.dirname(__file__), "twistedmatrix"))
root.indexNames = ["index.html", "index.cgi"]
root.processors = {".cgi": twcgi.CGIScript, ".rpy": script.ResourceScript}
root.putChild(b"mailman", twcgi.CGIDirectory(os.path.join(EXAMPLES, "cgi", "cgi-bin", "mailman")))
root.putChild(b"cgi-bin", twcgi.CGIDirectory(os.path.join(EXAMPLES, "cgi", "htdocs", "cgi-bin")))
root.putChild(b"users", distrib.UserDirectory(public_html=static.PublicFile))
root.putChild(b"doc", static.File("/usr/share/doc"))

resource = rewrite.RewriterResource(root, rewrite.tildeToUsers)

uid = "www-data"
gid = "www-data"
