# Shows how a request sees itself: behind vhost.rpy, the public address.
from trioweb import resource


class Where(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        secure = b"https" if request.isSecure() else b"http"
        return b"%s %s %s\n" % (secure, request.getRequestHostname(), request.prePathURL())


resource = Where()
