# The index of examples/static/rpysite: a resource script found through indexNames.
from trioweb.resource import Resource


class Index(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"<html><body>index.rpy rendered this page.</body></html>"


resource = Index()
