# Counts the visits of this client's session on this personal server, and says whose server it is.
import os
import pwd

from trioweb.resource import Resource


class Visits(Resource):
    isLeaf = True

    def render_GET(self, request):
        session = request.getSession()
        session.visits = getattr(session, "visits", 0) + 1
        request.setHeader(b"content-type", b"text/plain")
        owner = pwd.getpwuid(os.getuid()).pw_name
        return f"{owner} {session.uid.decode()} {session.visits} {len(request.site.sessions)}".encode()


resource = Visits()
