"""The guide's WSGI application: ``trioweb --wsgi helloworld.application``
(run from this directory: the current directory is on the module path)."""


def application(environ, start_response):
    start_response("200 OK", [("Content-type", "text/plain")])
    return [b"Hello World!"]
