"""Applications mounted below the root (``trioweb --class mounts.Root``)."""

from django_app import application as django_application
from flask_app import app as flask_application
from starlette_app import app as starlette_application

from trioweb.asgi import ASGIResource
from trioweb.resource import Resource
from trioweb.static import Data
from trioweb.wsgi import WSGIResource


class Root(Resource):
    def __init__(self):
        super().__init__()
        self.putChild(b"", Data(b"the root", "text/plain"))
        self.putChild(b"flask", WSGIResource(flask_application))
        self.putChild(b"django", WSGIResource(django_application))
        self.putChild(b"starlette", ASGIResource(starlette_application))
