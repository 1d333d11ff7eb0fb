"""The guide's resource tree: static children with putChild, and a dynamic
child that echoes how much of the path led to it (prepath) and what is left
(postpath).

Run: python examples/core/resource_tree.py [PORT]
Try: /, /hello, /echo/any/thing?x=1
"""

import sys
from html import escape

import trio

from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.static import Data


class PathEcho(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"prepath=%r postpath=%r args=%r" % (request.prepath, request.postpath, request.args)


class Home(Resource):
    def render_GET(self, request):
        links = "".join(f'<li><a href="{escape(name)}">{escape(name)}</a></li>' for name in ("hello", "echo/a/b"))
        return f"<html><body><ul>{links}</ul></body></html>".encode()


def make_root() -> Resource:
    root = Resource()
    root.putChild(b"", Home())
    root.putChild(b"hello", Data(b"Hello from a static child.", "text/plain"))
    root.putChild(b"echo", PathEcho())
    return root


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(Site(make_root()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
