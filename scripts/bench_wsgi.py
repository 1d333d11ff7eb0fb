"""WSGI "hello": trioweb --wsgi vs Twisted's WSGIResource vs gunicorn (sync
worker, one process), one core each, same run, access logs to files.

    scripts/bench wsgi [--duration SECONDS] [--connections N]

gunicorn comes from .bench-venv-apps (made by scripts/bench), never from the
project's dependencies. Its sync worker closes the connection after each
request (it does not keep connections alive), which is part of what is measured.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

from benchlib import APPS_BIN, TWISTED_PYTHON, app_bench_arguments, compare, free_port, trioweb_serving

HELLO = textwrap.dedent("""
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, world!"]
""")

TWISTED = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from twisted.web.server import Site
    from twisted.web.wsgi import WSGIResource
    from hello_wsgi import application

    resource = WSGIResource(reactor, reactor.getThreadPool(), application)
    reactor.listenTCP(int(sys.argv[1]), Site(resource, logPath=sys.argv[2]), interface="127.0.0.1")
    reactor.run()
""")


def main() -> None:
    options = app_bench_arguments()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "hello_wsgi.py").write_text(HELLO)
        Path(tmp, "twisted_wsgi.py").write_text(TWISTED)
        ports = [free_port() for _ in range(3)]
        servers = [
            trioweb_serving("--wsgi", "hello_wsgi:application", ports[0], tmp),
            ("Twisted", [TWISTED_PYTHON, "twisted_wsgi.py", str(ports[1]), f"{tmp}/twisted.log"], ports[1]),
            ("gunicorn", [str(APPS_BIN / "gunicorn"), "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{ports[2]}",
                          "--access-logfile", f"{tmp}/gunicorn.log", "hello_wsgi:application"], ports[2]),
        ]
        compare("WSGI hello", servers, reference="trioweb", duration=options.duration,
                connections=options.connections, cwd=tmp)


if __name__ == "__main__":
    main()
