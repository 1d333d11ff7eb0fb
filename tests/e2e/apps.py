"""Resources the end-to-end tests load with ``trioweb --class`` (PYTHONPATH=tests/e2e)."""

import trio

from trioweb.resource import NOT_DONE_YET, Resource


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
