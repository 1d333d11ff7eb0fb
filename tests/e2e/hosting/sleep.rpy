# Answers after ?s=SECONDS (default 1); streams ?lines=N lines instead, one per 0.2 s.
import trio

from trioweb.resource import Resource


class Sleep(Resource):
    isLeaf = True

    async def render_GET(self, request):
        lines = int(request.args.get(b"lines", [b"0"])[0])
        if lines:
            for i in range(lines):
                request.write(b"line %d\n" % i)
                await request.drain()
                await trio.sleep(0.2)
            request.finish()
            return None
        await trio.sleep(float(request.args.get(b"s", [b"1"])[0]))
        return b"slept"


resource = Sleep()
