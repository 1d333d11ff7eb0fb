"""The guide's "Adding Children": ``putChild`` overrides the filesystem, here
to publish the installed packages' documentation under ``/doc``.

Run: python examples/static/doc_child.py [PORT] [DOCDIR]
(serves examples/htdocs, with DOCDIR, by default /usr/share/doc, at /doc)
"""

import sys
from pathlib import Path

import trio

from trioweb import server, static

HTDOCS = Path(__file__).resolve().parent.parent / "htdocs"


def make_root(docs: str = "/usr/share/doc") -> static.File:
    root = static.File(str(HTDOCS))
    root.putChild(b"doc", static.File(docs))
    return root


async def main(port: int, docs: str) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await server.serve(server.Site(make_root(docs)), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080,
             sys.argv[2] if len(sys.argv) > 2 else "/usr/share/doc")
