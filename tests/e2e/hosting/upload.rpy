# Counts the bytes of a streamed request body (up to 1 GiB).
from trioweb.resource import Resource


class Upload(Resource):
    isLeaf = True
    stream_request_body = True
    max_request_body = 1024 * 1024 * 1024

    async def render_POST(self, request):
        total = 0
        async for piece in request.body_stream():
            total += len(piece)
        return b"%d" % total


resource = Upload()
