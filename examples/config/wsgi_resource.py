"""The guide's WSGI configuration ("Serving WSGI Applications", the ``.tac``
that runs ``twistd -y``): a WSGI application mounted in a resource tree,
next to a static page.

Twisted: a ``ThreadPool`` started and stopped with the reactor,
``WSGIResource(reactor, wsgiThreadPool, application)`` served by a ``Site``
on ``strports.service('tcp:8080', ...)`` under an ``Application``. Here the
pool is the resource's own (a ``trio.CapacityLimiter`` says how many threads
it may use at once) and lives as long as the server; ``tcp:8080`` is the
command's default listener.

Run: trioweb --config examples/config/wsgi_resource.py   (or trioweb -y ...)
Then ``/`` is a static page and ``/app/...`` the application, which sees
``SCRIPT_NAME=/app`` and the rest of the path in ``PATH_INFO``.
"""

import trio

from trioweb.resource import Resource
from trioweb.static import Data
from trioweb.wsgi import WSGIResource


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    where = environ["SCRIPT_NAME"] + " | " + environ["PATH_INFO"]
    return [where.encode("latin-1")]


resource = Resource()
resource.putChild(b"", Data(b"<a href='app/'>the application</a>", "text/html"))
# The threads the application may use at once (Twisted's thread pool).
resource.putChild(b"app", WSGIResource(application, limiter=trio.CapacityLimiter(10)))
