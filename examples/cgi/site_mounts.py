"""CGI mounted into a Python site, as twistedmatrix.com's own configuration
did: whole CGI directories (Mailman's cgi-bin) and single scripts placed in
the resource tree with putChild.

Run: python examples/cgi/site_mounts.py [PORT]
Then: /mailman/listinfo, /mailman/listinfo/twisted-python, /status, /cgi-bin/hello.cgi
As a root class: trioweb --class examples.cgi.site_mounts.MountedSite (from the checkout).
Once --config files land, this is the shape of a config file.
"""

import sys
from pathlib import Path

import trio

from trioweb import resource, server, static, twcgi

HERE = Path(__file__).resolve().parent


def make_root() -> resource.Resource:
    root = static.File(str(HERE / "htdocs"))
    root.putChild(b"mailman", twcgi.CGIDirectory(str(HERE / "cgi-bin" / "mailman")))
    root.putChild(b"status", twcgi.CGIScript(str(HERE / "cgi-bin" / "nph-status.cgi")))
    root.putChild(b"cgi-bin", twcgi.CGIDirectory(str(HERE / "htdocs" / "cgi-bin")))
    return root


def MountedSite() -> resource.Resource:
    """For --class: a zero-argument factory of the same root."""
    return make_root()


async def main(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await server.serve(server.Site(make_root()), listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
