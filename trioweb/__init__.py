"""trioweb: a web server for Python on trio, in the model of Twisted Web.

General layout
--------------
The package is built in layers, lowest first; an import only ever points
down (``tests/test_layers.py`` checks it against the table in
docs/architecture.md, the one place the layers are listed):

1. ``rpc`` (a package of its own, knowing nothing of trioweb): the RPC the
   distributed mode speaks;
2. ``trioweb.http``: one HTTP connection and the listeners, with
   ``trioweb.address`` and ``trioweb.endpoints``;
3. the core: ``resource`` (Resource), ``server`` (Site, and Request from
   ``_request``), ``util``, ``urlpath``, and the request's helpers (forms,
   cookies, the access log);
4. ``trioweb._fs``: what the kinds that serve a directory tree share;
5. the resource kinds, each independent of the others: ``static``,
   ``script``, ``vhost``, ``rewrite``, ``distrib``,
   ``twcgi``, ``wsgi``, ``asgi``, ``proxy``;
6. the face: ``cli`` (the ``trioweb`` command), ``config`` (Python
   configuration files) and ``testing``.

Import what you use from its module, as with Twisted
(``from trioweb.static import File``); this package itself exports only
its version.
"""

from trioweb._version import __version__

__all__ = ["__version__"]
