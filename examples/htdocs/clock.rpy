# "rpy scripts (or, how to save yourself some typing)" from Twisted Web in 60
# Seconds: the script runs again on every request.
import time

from trioweb.resource import Resource


class ClockPage(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"<html><body>" + time.ctime().encode("utf-8") + b"</body></html>"


resource = ClockPage()
