"""Choosing content types: ``contentTypes`` maps extensions to types and can be
extended (a type the host's mime.types lacks) or overridden, and
``defaultType`` covers unknown extensions.

Run: python examples/static/content_types.py [PORT]   (serves examples/htdocs)
"""

import sys
from pathlib import Path

import trio

from trioweb import server, static

HTDOCS = Path(__file__).resolve().parent.parent / "htdocs"


def make_root(directory: str = str(HTDOCS)) -> static.File:
    root = static.File(directory, defaultType="application/octet-stream")
    # A copy, so that this site's choices do not change every other File.
    root.contentTypes = dict(static.File.contentTypes)
    root.contentTypes[".gmi"] = "text/gemini"
    root.contentTypes[".woff2"] = "font/woff2"
    root.contentTypes[".md"] = "text/plain; charset=utf-8"
    return root


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await server.serve(server.Site(make_root()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
