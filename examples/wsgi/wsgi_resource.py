"""A WSGI application mounted in a resource tree: Twisted's
``WSGIResource(reactor, reactor.getThreadPool(), application)`` ported.

Run from this directory: ``trioweb --class wsgi_resource.Root``. Then
``/`` is a static page and ``/app/...`` is the application, which sees
``SCRIPT_NAME=/app`` and the rest of the path in ``PATH_INFO``.
(When trioweb reads configuration files, this becomes one.)
"""

import trio

from trioweb.resource import Resource
from trioweb.static import Data
from trioweb.wsgi import WSGIResource


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    where = environ["SCRIPT_NAME"] + " | " + environ["PATH_INFO"]
    return [where.encode("latin-1")]


class Root(Resource):
    def __init__(self):
        super().__init__()
        self.putChild(b"", Data(b"<a href='app/'>the application</a>", "text/html"))
        # The threads a WSGI application may use at once (Twisted's thread pool).
        self.putChild(b"app", WSGIResource(application, limiter=trio.CapacityLimiter(10)))
