# Reached as /foo.rpy, or as /foo when the File ignores the .rpy extension.
from trioweb.resource import Resource


class Foo(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"foo.rpy at " + b"/".join(request.prepath)


resource = Foo()
