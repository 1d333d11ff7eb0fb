"""The tutorial's bonus, "How to Configure <user>.example.com": each user's
site at a host name of her own (``alice.example.com``), the front's own
pages and ``/~alice/`` on every other name.

Twisted's slide builds it from a ``NameVirtualHost`` whose default is the
user directory and a host per user. Here ``vhost.UserNameVirtualHost``
takes any ``<user>.<tail>`` (one label, a real user above the minimum uid:
the same checks as ``/~alice/``; anything else under the tail is 404) and
sends it to that user's site through the directory's ``user_resource``.
Separate host names are separate origins to a browser: alice's scripts
cannot read bob's pages or cookies, which ``/~alice/`` on a shared origin
cannot promise (docs/community-hosting.md).

The tail comes from ``USER_DOMAIN`` (default ``example.com``): the DNS
needs a wildcard record ``*.example.com`` pointing at the front.

Run (as root, to bind port 80 and then become www-data):
trioweb --config examples/config/user_subdomains.py --listen tcp:80 --uid www-data --gid www-data
"""

import os

from trioweb import distrib, static, vhost

users = distrib.UserDirectory(public_html=static.PublicFile)
resource = vhost.UserNameVirtualHost(users, os.environ.get("USER_DOMAIN", "example.com"))
