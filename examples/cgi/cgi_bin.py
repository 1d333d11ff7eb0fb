"""The guide's "Advanced Configuration" cgi-bin site: static files from one
directory, CGI scripts from another mounted at /cgi-bin.

Run: python examples/cgi/cgi_bin.py [PORT]
      (serves examples/cgi/htdocs, with examples/cgi/htdocs/cgi-bin as /cgi-bin)
As a root class: trioweb --class examples.cgi.cgi_bin.CGIBinSite (from the checkout).
Once --config files land, this is the shape of a config file (`resource = make_root()`).
"""

import sys
from pathlib import Path

import trio

from trioweb import server, static, twcgi

HERE = Path(__file__).resolve().parent
HTDOCS = HERE / "htdocs"
CGI_BIN = HTDOCS / "cgi-bin"


def make_root(htdocs: str = str(HTDOCS), cgi_bin: str = str(CGI_BIN)) -> static.File:
    root = static.File(htdocs)
    root.putChild(b"cgi-bin", twcgi.CGIDirectory(cgi_bin))
    return root


def CGIBinSite() -> static.File:
    """For --class: a zero-argument factory of the same root."""
    return make_root()


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await server.serve(server.Site(make_root()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
