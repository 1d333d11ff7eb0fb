# Says which account the process serving it runs as.
import os
import pwd

from trioweb.resource import Resource


class WhoAmI(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return f"{os.getuid()} {pwd.getpwuid(os.getuid()).pw_name}".encode()


resource = WhoAmI()
