# Says which process serves it (a socket-activated personal server is a new one after each idle exit).
import os

from trioweb.resource import Resource


class Pid(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return str(os.getpid()).encode()


resource = Pid()
