"""The tutorial's "uber example": one server for several names, each with
what the earlier slides showed: the main site runs resource scripts and
is indexed by ``index.rpy``, publishes the documentation at ``/doc``, CGI
scripts at ``/cgi-bin`` and the users' sites at ``/users/name/`` and
``/~name/``; other names are plain virtual hosts, and one is served by
another web server through a reverse proxy; the server logs and limits as
the Site says.

Twisted's: a ``NameVirtualHost`` whose ``default`` is a ``static.File``
with ``processors``, ``indexNames``, ``putChild('doc', ...)``,
``putChild('cgi-bin', twcgi.CGIDirectory(...))``,
``putChild('users', distrib.UserDirectory())`` behind
``RewriterResource(..., tildeToUsers)``, ``addHost`` for the other names,
one of them a ``proxy.ReverseProxyResource('localhost', 81, '')``.

The proxied host's server is ``PROXIED_UPSTREAM`` (``HOST:PORT``, by
default 127.0.0.1:81 as in the tutorial); the access log ``WEB_ACCESS_LOG``
(standard output by default).

Run: trioweb --config examples/config/uber.py
"""

import os

from trioweb import distrib, proxy, rewrite, script, server, static, twcgi, vhost
from trioweb.http import Limits

HERE = os.path.dirname(__file__)
EXAMPLES = os.path.join(HERE, "..")
WWW = os.path.join(HERE, "www")

main = static.File(os.path.join(EXAMPLES, "htdocs"))
main.processors = {".rpy": script.ResourceScript}
main.indexNames = ["index.html", "index.rpy"]
main.putChild(b"doc", static.File("/usr/share/doc"))
main.putChild(b"cgi-bin", twcgi.CGIDirectory(os.path.join(EXAMPLES, "cgi", "htdocs", "cgi-bin")))
main.putChild(b"users", distrib.UserDirectory(public_html=static.PublicFile))

upstream_host, _, upstream_port = os.environ.get("PROXIED_UPSTREAM", "127.0.0.1:81").rpartition(":")

hosts = vhost.NameVirtualHost()
hosts.default = rewrite.RewriterResource(main, rewrite.tildeToUsers)
hosts.addHost("foo.com", static.File(os.path.join(WWW, "foo")))
hosts.addHost("bar.com", static.File(os.path.join(WWW, "bar")))
hosts.addHost("proxied.com", proxy.ReverseProxyResource(upstream_host, int(upstream_port), b""))

# A Site, not just a root: this file sets the access log and the limits.
site = server.Site(hosts, logPath=os.environ.get("WEB_ACCESS_LOG", "-"),
                   limits=Limits(max_body_size=64 * 1024, keepalive_timeout=30.0))
