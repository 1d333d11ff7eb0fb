"""Dynamic "hello" resource: trioweb vs Twisted Web, one core each, same run,
with uvicorn (httptools, one worker, the ASGI hello of bench_asgi) on
asyncio as the Python ceiling (the fastest Python server on the same kind
of parser), and on uvloop (a C event loop) for information.

    scripts/bench hello [--duration SECONDS] [--connections N]

Each ratio compares servers doing the same work: trioweb and Twisted write
an access log line per request to a file; uvicorn is run both without one
(``--log-level warning``) and with its own (its default, ``info``: a line
per request to its stdout, /dev/null here), and trioweb both with and
without, so that each uvicorn column has a like-for-like trioweb row.
uvicorn comes from .bench-venv-apps (made by scripts/bench).
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

from bench_asgi import HELLO as ASGI_HELLO
from benchlib import TRIOWEB_PYTHON, TWISTED_PYTHON, UVICORN_LOOPS, Server, free_port, table, uvicorn_command, wrk

TRIOWEB_APP = textwrap.dedent("""
    import sys, trio
    from trioweb.resource import Resource
    from trioweb.server import Site, serve

    class Hello(Resource):
        isLeaf = True
        def render_GET(self, request):
            return b"Hello, world!"

    async def main():
        listeners = await trio.open_tcp_listeners(int(sys.argv[1]), host="127.0.0.1")
        await serve(Site(Hello(), logPath=sys.argv[2] if len(sys.argv) > 2 else None), listeners)

    trio.run(main)
""")

TWISTED_APP = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Hello(Resource):
        isLeaf = True
        def render_GET(self, request):
            return b"Hello, world!"

    reactor.listenTCP(int(sys.argv[1]), Site(Hello(), logPath=sys.argv[2]), interface="127.0.0.1")
    reactor.run()
""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    options = parser.parse_args()
    rows = []
    results = {}

    def measure(name: str, port: int, server: Server) -> None:
        wrk(f"http://127.0.0.1:{port}/", 2, options.connections)  # warm-up
        result = results[name] = wrk(f"http://127.0.0.1:{port}/", options.duration, options.connections, server)
        rows.append((name, f"{result.requests_per_second:,.0f}", f"{result.p50_ms:.2f}",
                     f"{result.p99_ms:.2f}", f"{result.cpu_us_per_request:.1f}",
                     f"{server.peak_rss_mib():.1f}", str(result.errors)))

    logged_uvicorn = f"{UVICORN_LOOPS[0][0]}, log"
    with tempfile.TemporaryDirectory() as tmp:
        servers = (("trioweb", TRIOWEB_PYTHON, TRIOWEB_APP, True),
                   ("trioweb, no log", TRIOWEB_PYTHON, TRIOWEB_APP, False),
                   ("Twisted Web", TWISTED_PYTHON, TWISTED_APP, True))
        for name, python, app, logged in servers:
            script = Path(tmp) / f"{name.split()[0].strip(',').lower()}_hello.py"
            script.write_text(app)
            log = [str(Path(tmp) / f"{script.stem}.log")] if logged else []
            port = free_port()
            with Server([python, str(script), str(port), *log], port) as server:
                measure(name, port, server)
        Path(tmp, "hello_asgi.py").write_text(ASGI_HELLO)
        uvicorns = [(name, loop, False) for name, loop in UVICORN_LOOPS]
        uvicorns.insert(1, (logged_uvicorn, UVICORN_LOOPS[0][1], True))
        for name, loop, logged in uvicorns:
            port = free_port()
            with Server(uvicorn_command(loop, port, "hello_asgi:app", access_log=logged), port, cwd=tmp) as server:
                measure(name, port, server)
    # Each pair does the same work: both log, or neither does.
    pairs = [("trioweb", "Twisted Web", "Twisted"), ("trioweb", logged_uvicorn, logged_uvicorn),
             *(("trioweb, no log", name, name) for name, _ in UVICORN_LOOPS)]
    for ours_name, theirs_name, label in pairs:
        ours, theirs = results[ours_name], results[theirs_name]
        rows.append((f"{ours_name}/{label}", f"{ours.requests_per_second / theirs.requests_per_second:.2f}x", "", "",
                     f"{theirs.cpu_us_per_request / ours.cpu_us_per_request:.2f}x less", "", ""))
    table(f"dynamic hello, wrk -t1 -c{options.connections} -d{options.duration:g}s, one core per side, "
          f"load average {Path('/proc/loadavg').read_text().split()[0]} at the end",
          rows, ("server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "peak RSS MiB", "errors"))


if __name__ == "__main__":
    main()
