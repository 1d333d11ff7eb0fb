"""The guide's "Request encoders": a resource wrapped to be sent gzip'd.

``EncodingResourceWrapper(resource, [GzipEncoderFactory()])`` compresses what
``resource`` renders for clients that accept it (``br`` instead when the
optional brotli package is installed and the client prefers it), and adds
``Vary: Accept-Encoding``. Mind BREACH (docs/encoding.md): do not compress
pages that reflect what a client sent next to a secret.

Run: python examples/core/gzip_encoder.py [PORT]
then: curl --compressed -i http://127.0.0.1:PORT/
"""

import sys

import trio

from trioweb.resource import EncodingResourceWrapper, Resource
from trioweb.server import GzipEncoderFactory, Site, serve


class Simple(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"<html>Hello, world!</html>"


resource = Simple()
wrapped = EncodingResourceWrapper(resource, [GzipEncoderFactory()])
site = Site(wrapped)


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(site, listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
