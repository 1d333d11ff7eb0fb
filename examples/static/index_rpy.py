"""The guide's "Modifying File Resources": every .rpy is a resource script, and
directories are rendered by their index.rpy.

Run: python examples/static/index_rpy.py [PORT]   (serves examples/static/rpysite)
"""

import sys
from pathlib import Path

import trio

from trioweb import script, server, static

SITE = Path(__file__).resolve().parent / "rpysite"


def make_root(directory: str = str(SITE)) -> static.File:
    root = static.File(directory)
    root.indexNames = ["index.rpy"]
    root.processors = {".rpy": script.ResourceScript}
    return root


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await server.serve(server.Site(make_root()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
