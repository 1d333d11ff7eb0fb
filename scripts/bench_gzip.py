"""Compressed responses: a 64 KiB HTML page gzip'd by trioweb and by Twisted Web, same run.

    scripts/bench gzip [--duration SECONDS] [--connections N]

The page is rendered by a resource wrapped in ``EncodingResourceWrapper``
with ``GzipEncoderFactory()`` on both sides, and wrk sends
``Accept-Encoding: gzip``. Each side first runs with its own defaults
(trioweb: level 6, one compression call, a Content-Length; Twisted: level 9,
chunked), then both at the same level (6, then 9), so that the cost of
the level and the cost of the server can be told apart. Before loading,
each server's response is fetched once and checked to be gzip that
decodes to the page.
"""

from __future__ import annotations

import argparse
import gzip
import random
import tempfile
import textwrap
import urllib.request
from pathlib import Path

from benchlib import TRIOWEB_PYTHON, TWISTED_PYTHON, Server, free_port, table, wrk

PAGE_SIZE = 64 * 1024

TRIOWEB_APP = textwrap.dedent("""
    import sys, trio
    from trioweb.resource import EncodingResourceWrapper, Resource
    from trioweb.server import GzipEncoderFactory, Site, serve

    PAGE = open(sys.argv[3], "rb").read()

    class Page(Resource):
        isLeaf = True
        def render_GET(self, request):
            return PAGE

    async def main():
        level = int(sys.argv[4])
        factory = GzipEncoderFactory() if level < 0 else GzipEncoderFactory(level)
        listeners = await trio.open_tcp_listeners(int(sys.argv[1]), host="127.0.0.1")
        await serve(Site(EncodingResourceWrapper(Page(), [factory]), logPath=sys.argv[2]), listeners)

    trio.run(main)
""")

TWISTED_APP = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from twisted.web.resource import EncodingResourceWrapper, Resource
    from twisted.web.server import GzipEncoderFactory, Site

    PAGE = open(sys.argv[3], "rb").read()

    class Page(Resource):
        isLeaf = True
        def render_GET(self, request):
            return PAGE

    factory = GzipEncoderFactory()
    if int(sys.argv[4]) >= 0:
        factory.compressLevel = int(sys.argv[4])
    site = Site(EncodingResourceWrapper(Page(), [factory]), logPath=sys.argv[2])
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    reactor.run()
""")


def html_page(size: int) -> bytes:
    """A page of about ``size`` bytes that compresses as real pages do (about 4 to 6 times)."""
    words = ("server resource request response session cookie header body stream client trio twisted "
             "render child path query value table row column item price total order status user").split()
    rng = random.Random(16)
    rows = []
    body = 0
    while body < size - 200:
        cells = "".join(f"<td>{' '.join(rng.choice(words) for _ in range(rng.randint(1, 4)))}</td>"
                        for _ in range(4))
        row = f'<tr class="r{len(rows) % 2}"><td>{rng.randint(1, 99999)}</td>{cells}<td>{rng.random():.4f}</td></tr>\n'
        rows.append(row)
        body += len(row)
    page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Orders</title></head><body>\n<table>\n"
            + "".join(rows) + "</table>\n</body></html>\n").encode()
    return page[:size - 16] + b"</body></html>\n" if len(page) > size else page


def check_gzip(port: int, page: bytes) -> int:
    """The size of the compressed response; fails if it is not gzip of the page."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip", response.headers
        body = response.read()
    assert gzip.decompress(body) == page
    return len(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    options = parser.parse_args()
    rows = []
    results = {}
    runs = [("trioweb", "default (6)", -1), ("Twisted Web", "default (9)", -1),
            ("trioweb", "6", 6), ("Twisted Web", "6", 6),
            ("trioweb", "9", 9), ("Twisted Web", "9", 9)]
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "page.html"
        page = html_page(PAGE_SIZE)
        page_file.write_bytes(page)
        for name, label, level in runs:
            python, app = (TRIOWEB_PYTHON, TRIOWEB_APP) if name == "trioweb" else (TWISTED_PYTHON, TWISTED_APP)
            script = Path(tmp) / f"{name.split()[0].lower()}_gzip.py"
            script.write_text(app)
            port = free_port()
            log = Path(tmp) / f"{script.stem}_{level}.log"
            with Server([python, str(script), str(port), str(log), str(page_file), str(level)], port) as server:
                compressed = check_gzip(port, page)
                url = f"http://127.0.0.1:{port}/"
                wrk(url, 2, options.connections, headers=("Accept-Encoding: gzip",))  # warm-up
                result = wrk(url, options.duration, options.connections, server, headers=("Accept-Encoding: gzip",))
                results[name, level] = result
                rows.append((name, label, f"{len(page):,} -> {compressed:,}", f"{result.requests_per_second:,.0f}",
                             f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}", f"{result.cpu_us_per_request:.0f}",
                             f"{server.peak_rss_mib():.1f}", str(result.errors)))
    for level, label in ((-1, "defaults"), (6, "both level 6"), (9, "both level 9")):
        ours, theirs = results["trioweb", level], results["Twisted Web", level]
        rows.append((f"trioweb/Twisted, {label}", "", "",
                     f"{ours.requests_per_second / theirs.requests_per_second:.2f}x", "", "",
                     f"{theirs.cpu_us_per_request / ours.cpu_us_per_request:.2f}x less", "", ""))
    table(f"64 KiB HTML page, gzip, wrk -t1 -c{options.connections} -d{options.duration:g}s, one core per side",
          rows, ("server", "level", "bytes", "req/s", "p50 ms", "p99 ms", "CPU us/req", "peak RSS MiB", "errors"))


if __name__ == "__main__":
    main()
