"""The tutorial's "uber example": one server for several names, each with
what the earlier slides showed: the main site runs resource scripts and
is indexed by ``index.rpy``, publishes the documentation at ``/doc`` and
the users' sites at ``/~name/``; other names are plain virtual hosts;
the server logs and limits as the Site says.

Twisted's: a ``NameVirtualHost`` whose ``default`` is a ``static.File``
with ``processors``, ``indexNames``, ``putChild('doc', ...)``,
``putChild('users', distrib.UserDirectory())`` behind
``RewriterResource(..., tildeToUsers)``, ``addHost`` for the other names,
a ``cgi-bin`` and a reverse-proxied host.

Not here yet: the ``cgi-bin`` (``trioweb.twcgi``) and the reverse-proxied
host (``trioweb.proxy``).

Run: trioweb --config examples/config/uber.py
"""

import os

from trioweb import distrib, rewrite, script, server, static, vhost
from trioweb.http import Limits

HERE = os.path.dirname(__file__)
WWW = os.path.join(HERE, "www")

main = static.File(os.path.join(HERE, "..", "htdocs"))
main.processors = {".rpy": script.ResourceScript}
main.indexNames = ["index.html", "index.rpy"]
main.putChild(b"doc", static.File("/usr/share/doc"))
main.putChild(b"users", distrib.UserDirectory(public_html=static.PublicFile))


hosts = vhost.NameVirtualHost()
hosts.default = rewrite.RewriterResource(main, rewrite.tildeToUsers)
hosts.addHost("foo.com", static.File(os.path.join(WWW, "foo")))
hosts.addHost("bar.com", static.File(os.path.join(WWW, "bar")))

# A Site, not just a root: this file sets the access log and the limits.
site = server.Site(hosts, logPath=os.environ.get("WEB_ACCESS_LOG", "-"),
                   limits=Limits(max_body_size=64 * 1024, keepalive_timeout=30.0))
