"""The guide's "Advanced Techniques" (first example): no virtual host is
configured by hand; each directory under the vhosts directory is a host of
that name.

Twisted: ``for dir in os.listdir("/var/vhosts"):
root.addHost(dir, static.File(os.path.join("/var/vhosts", dir)))``
on a ``NameVirtualHost`` whose default is the htdocs directory.

The directory is read once, when the file runs: a new host needs a restart
(or a reload, once trioweb re-reads its configuration on SIGHUP).

Run: trioweb --config examples/config/vhosts_from_directory.py
"""

import os

from trioweb import static, vhost

VHOSTS = os.path.join(os.path.dirname(__file__), "vhosts")  # the guide's /var/vhosts

resource = vhost.NameVirtualHost()
resource.default = static.File(os.path.join(os.path.dirname(__file__), "..", "htdocs"))
for name in sorted(os.listdir(VHOSTS)):
    if os.path.isdir(os.path.join(VHOSTS, name)):
        resource.addHost(name, static.File(os.path.join(VHOSTS, name)))
