"""Distributed mode: a small resource, a 1 MiB one (bytes from memory) and a
1 MiB static file (``File``), served directly, through trioweb's front, and
through Twisted's distrib (front + PB personal server).

    scripts/bench distrib [--duration SECONDS]

Each setup's processes (front and personal server) share CPU 0; wrk runs on CPU 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from benchlib import TRIOWEB_PYTHON, TWISTED_PYTHON, Server, free_port, table, wrk

RESOURCES = """
class Hello(Resource):
    isLeaf = True
    def render_GET(self, request):
        return b"Hello, world!"

class Big(Resource):
    isLeaf = True
    body = b"x" * (1024 * 1024)
    def render_GET(self, request):
        return self.body

def make_root(files):
    root = Resource()
    root.putChild(b"hello", Hello())
    root.putChild(b"big", Big())
    root.putChild(b"files", File(files))
    return root
"""

TRIOWEB_PERSONAL = textwrap.dedent("""
    import sys, trio
    from trioweb.resource import Resource
    from trioweb.server import Site, serve
    from trioweb.static import File
    from trioweb.distrib import ResourcePublisher, serve_publisher
    from trioweb.endpoints import open_listeners, parse_endpoint
""") + RESOURCES + textwrap.dedent("""
    async def main(mode, where, log, files):
        site = Site(make_root(files), logPath=log)
        if mode == "direct":
            await serve(site, await trio.open_tcp_listeners(int(where), host="127.0.0.1"))
        else:
            async with open_listeners([parse_endpoint("unix:" + where)]) as listeners:
                await serve_publisher(ResourcePublisher(site), listeners)

    trio.run(main, *sys.argv[1:5])
""")

TRIOWEB_FRONT = textwrap.dedent("""
    import sys, trio
    from trioweb.resource import Resource
    from trioweb.server import Site, serve
    from trioweb.distrib import ResourceSubscription

    async def main(port, path, log):
        root = Resource()
        root.putChild(b"u", ResourceSubscription("unix", path))
        await serve(Site(root, logPath=log), await trio.open_tcp_listeners(int(port), host="127.0.0.1"))

    trio.run(main, *sys.argv[1:4])
""")

TWISTED_PERSONAL = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from twisted.spread import pb
    from twisted.web import distrib
    from twisted.web.resource import Resource
    from twisted.web.server import Site
    from twisted.web.static import File
""") + RESOURCES + textwrap.dedent("""
    site = Site(make_root(sys.argv[3]), logPath=sys.argv[2])
    reactor.listenUNIX(sys.argv[1], pb.PBServerFactory(distrib.ResourcePublisher(site)))
    reactor.run()
""")

TWISTED_FRONT = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from twisted.web import distrib
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    root = Resource()
    root.putChild(b"u", distrib.ResourceSubscription("unix", sys.argv[2]))
    reactor.listenTCP(int(sys.argv[1]), Site(root, logPath=sys.argv[3]), interface="127.0.0.1")
    reactor.run()
""")


# (path, wrk connections, label)
SCENARIOS = (("hello", 50, "small"), ("big", 10, "1 MiB"), ("files/1m.bin", 10, "1 MiB file"))


def wait_for_socket(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no socket at {path}")
        time.sleep(0.05)


def warm_up(url: str, count: int = 20) -> None:
    """Requests one after another, each read to its end (and the front's
    connection to its backend made): a warm-up with wrk would end by dropping
    requests in flight, which wedges Twisted's distrib for the run after it."""
    for _ in range(count):
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()


def run_one(name: str, label: str, path: str, connections: int, start, options, rows, results) -> None:
    """Start fresh processes (``start`` is a context manager yielding (base URL, servers)) and load them.

    Fresh for each scenario: a client dropping in-flight requests at the end of
    a run wedges Twisted's distrib (a bug of its pending-request queue), and
    every setup is treated the same way; see also `warm_up`.
    """
    with start() as (base, servers):
        url = f"{base}/{path}"
        warm_up(url)
        cpu_before = sum(s.cpu_seconds() for s in servers)
        result = wrk(url, options.duration, connections)
        cpu = (sum(s.cpu_seconds() for s in servers) - cpu_before) / max(result.requests, 1) * 1e6
    results[(name, label)] = result
    if not result.requests:  # nothing completed within the run: no per-request figure exists
        rows.append((name, label, "0", "-", "-", "-", f"{result.errors} (none completed)"))
        return
    rows.append((name, label, f"{result.requests_per_second:,.0f}", f"{result.p50_ms:.2f}",
                 f"{result.p99_ms:.2f}", f"{cpu:.0f}", str(result.errors)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    options = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = tmp / "files"
        files.mkdir()
        (files / "1m.bin").write_bytes(b"f" * (1024 * 1024))
        an_hour_ago = time.time() - 3600  # old enough that no server treats it as being written
        os.utime(files / "1m.bin", (an_hour_ago, an_hour_ago))
        scripts = {}
        for name, text in (("tw_personal", TRIOWEB_PERSONAL), ("tw_front", TRIOWEB_FRONT),
                           ("tx_personal", TWISTED_PERSONAL), ("tx_front", TWISTED_FRONT)):
            scripts[name] = tmp / f"{name}.py"
            scripts[name].write_text(text)

        @contextmanager
        def direct():
            port = free_port()
            with Server([TRIOWEB_PYTHON, str(scripts["tw_personal"]), "direct", str(port), str(tmp / "d.log"),
                         str(files)], port) as server:
                yield f"http://127.0.0.1:{port}", [server]

        @contextmanager
        def pair(python: str, personal: Path, front: Path, personal_args: list[str]):
            sock, port = tmp / "backend.sock", free_port()
            sock.unlink(missing_ok=True)
            with Server([python, str(personal), *personal_args, str(sock), str(tmp / "p.log"), str(files)],
                        None) as back:
                wait_for_socket(sock)
                with Server([python, str(front), str(port), str(sock), str(tmp / "f.log")], port) as server:
                    yield f"http://127.0.0.1:{port}/u", [server, back]

        setups = [
            ("trioweb direct", direct),
            ("trioweb front", lambda: pair(TRIOWEB_PYTHON, scripts["tw_personal"], scripts["tw_front"], ["publish"])),
            ("Twisted distrib", lambda: pair(TWISTED_PYTHON, scripts["tx_personal"], scripts["tx_front"], [])),
        ]
        for name, start in setups:
            for path, connections, label in SCENARIOS:
                run_one(name, label, path, connections, start, options, rows, results)

    for _path, _connections, label in SCENARIOS:
        ours, theirs = results[("trioweb front", label)], results[("Twisted distrib", label)]
        if not theirs.requests_per_second:
            rows.append(("front/Twisted", label, "no ratio", "", "", "", "(Twisted completed none)"))
            continue
        ratio = ours.requests_per_second / theirs.requests_per_second
        rows.append(("front/Twisted", label, f"{ratio:.1f}x", "", "", "", ""))
    table(f"distributed mode, wrk -t1 (50 connections small, 10 for 1 MiB) -d{options.duration:g}s; "
          "front + personal server on one core",
          rows, ("setup", "resource", "req/s", "p50 ms", "p99 ms", "CPU us/req", "errors"))


if __name__ == "__main__":
    main()
