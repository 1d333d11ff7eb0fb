# Streams ?mib=N mebibytes (default 1) in 256 KiB writes, with backpressure.
from trioweb.resource import NOT_DONE_YET, Resource


class Big(Resource):
    isLeaf = True

    def render_GET(self, request):
        mib = int(request.args.get(b"mib", [b"1"])[0])
        request.setHeader(b"content-length", b"%d" % (mib * 1024 * 1024))

        async def produce():
            piece = b"b" * (256 * 1024)
            for _ in range(mib * 4):
                request.write(piece)
                await request.drain()
            request.finish()

        request.start_soon(produce)
        return NOT_DONE_YET


resource = Big()
