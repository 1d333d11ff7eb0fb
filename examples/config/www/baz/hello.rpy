# baz's resource script: reached as /hello (the .rpy extension is ignored).
from trioweb.resource import Resource


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"baz says hello from " + request.getRequestHostname()


resource = Hello()
