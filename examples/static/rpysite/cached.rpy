# cache(): the script runs once; later requests get the resource built then.
import time

from trioweb.resource import Resource

cache()  # noqa: F821 (given to resource scripts)


class Built(Resource):
    isLeaf = True
    when = repr(time.time()).encode()

    def render_GET(self, request):
        return b"built at " + self.when


resource = Built()
