"""Resources the end-to-end tests load with ``trioweb --class`` (PYTHONPATH=tests/e2e)."""

import trio

from trioweb.resource import NOT_DONE_YET, EncodingResourceWrapper, Resource
from trioweb.server import GzipEncoderFactory
from trioweb.static import Data


class Fails(Resource):
    isLeaf = True

    def render_GET(self, request):
        raise RuntimeError("<b>failure detail</b>")


class Slow(Resource):
    """Streams ``?seconds=N`` (default 2) lines, one per 0.25 s."""

    isLeaf = True

    def render_GET(self, request):
        seconds = float(request.args.get(b"seconds", [b"2"])[0])

        async def stream():
            steps = int(seconds / 0.25)
            for i in range(steps):
                request.write(b"line %d\n" % i)
                await request.drain()
                await trio.sleep(0.25)
            request.finish()

        request.start_soon(stream)
        return NOT_DONE_YET


class Leaf(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"leaf " + request.path


class GzipOnlyPage(EncodingResourceWrapper):
    """A page compressed with gzip alone (no br, even with brotli installed), whose
    script reports the Content-Encoding the browser was sent for it."""

    def __init__(self):
        super().__init__(Data(CHROMIUM_PAGE, "text/html"), [GzipEncoderFactory(brotli=False)])


CHROMIUM_PAGE = b"""<!DOCTYPE html><html><head><title>chromium</title></head><body>
<p id="text">""" + b"Decoded by the browser. " * 200 + b"""</p>
<p id="coding"></p>
<script>
var request = new XMLHttpRequest();
request.open("GET", location.href, false);
request.setRequestHeader("Cache-Control", "no-cache");
request.send();
document.getElementById("coding").textContent = "coding=" + request.getResponseHeader("content-encoding");
</script></body></html>"""
