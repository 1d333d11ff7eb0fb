"""The guide's "Virtual Hosts": one server, a default site, two plain
virtual hosts (foo.com and bar.com) and one (baz) whose site runs resource
scripts with extension-less URLs.

Twisted: ``root = vhost.NameVirtualHost()``, ``root.default = static.File(...)``,
``root.addHost("foo.com", static.File("/var/www/foo"))``, the same for
bar.com, and for baz a File with ``processors = {'.rpy': ResourceScript}``
and ``ignoreExt('.rpy')``.

Run: trioweb --config examples/config/virtual_hosts.py
then: curl -H 'Host: foo.com' http://127.0.0.1:8080/
"""

import os

from trioweb import script, static, vhost

WWW = os.path.join(os.path.dirname(__file__), "www")  # the guide's /var/www

resource = vhost.NameVirtualHost()
resource.default = static.File(os.path.join(os.path.dirname(__file__), "..", "htdocs"))
resource.addHost("foo.com", static.File(os.path.join(WWW, "foo")))
resource.addHost("bar.com", static.File(os.path.join(WWW, "bar")))

baz = static.File(os.path.join(WWW, "baz"))
baz.processors = {".rpy": script.ResourceScript}
baz.ignoreExt(".rpy")
resource.addHost("baz", baz)
