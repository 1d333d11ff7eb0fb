"""The tutorial's "User Directory Server": the front of a community site.
``/`` lists the users who publish, ``/~alice/`` is alice's site: her own
personal server (``trioweb --personal``, which can run this package's
``personal.py`` too) when she runs one, else her ``~/public_html`` as plain
files.

Twisted: ``root = distrib.UserDirectory()`` served by a ``Site`` (what
``twistd web --user`` builds). ``public_html=static.PublicFile`` makes the
front serve ``public_html`` without running or showing scripts: user code
runs only in the user's own process.

Run (as root, to bind port 80 and then become www-data):
trioweb --config examples/config/user_directory.py --listen tcp:80 --uid www-data --gid www-data
"""

from trioweb import distrib, static

resource = distrib.UserDirectory(public_html=static.PublicFile)
