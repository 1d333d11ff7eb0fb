"""Twisted Web in 60 Seconds, "Serving Static Content From a Directory".

Run: python examples/static/serve_directory.py [PORT] [DIR]
(DIR defaults to examples/htdocs; the guide serves /tmp.)
The same thing from the command line: trioweb --path DIR
"""

import sys
from pathlib import Path

import trio

from trioweb.server import Site, serve
from trioweb.static import File

HTDOCS = Path(__file__).resolve().parent.parent / "htdocs"


async def main(port: int, directory: str) -> None:
    resource = File(directory)
    factory = Site(resource)
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(factory, listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080, sys.argv[2] if len(sys.argv) > 2 else str(HTDOCS))
