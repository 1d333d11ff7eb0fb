"""Reverse proxies: trioweb against Twisted Web and nginx, in front of the same upstream, on loopback.

Run through ``scripts/bench proxy [--duration SECONDS]``. The upstream is
nginx (one worker, pinned to the CPU wrk uses, so that the proxy under test
has the other one to itself) serving a 1 KiB and a 1 MiB file. In front of
it, one at a time:

- trioweb: examples/proxy/reverse_proxy.py (``ReverseProxyResource``,
  kept-alive upstream connections);
- Twisted: ``twisted.web.proxy.ReverseProxyResource`` (HTTP/1.0, a new
  upstream connection per request);
- nginx: ``proxy_pass`` to an upstream block with ``keepalive 64`` (the bound of trioweb's pool too).

For each: requests per second, p99 and the proxy's CPU time per request for
the small file (``wrk -c50``), the same and MiB/s for the 1 MiB file
(``wrk -c4``), and the proxy's peak RSS. No access logs anywhere.

Then the HTTP client alone, which is what decided how trioweb's proxy talks
to its upstream (docs/design-notes.md): the same GETs of the upstream's two
files by 16 tasks, with the proxy's own client (``trioweb.proxy._client``, on
llhttp) and with httpcore's connection pool, each in its own process pinned
to the proxy's CPU: CPU µs per request and requests per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_static import nginx_binary
from benchlib import (
    ROOT,
    TRIOWEB_PYTHON,
    TWISTED_PYTHON,
    Server,
    free_port,
    measure_each,
    nginx_conf,
    pinned,
    table,
    wrk,
)

MiB = 1024 * 1024
SMALL, BIG = "small.html", "big.bin"

UPSTREAM_HTTP = """\
    access_log off;
    default_type application/octet-stream;
    types {{ text/html html; }}
    sendfile on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {files};
    }}
"""

PROXY_HTTP = """\
    access_log off;
    keepalive_requests 1000000;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""

TWISTED_PROXY = """\
import os
import sys
# Twisted logs a traceback for each request wrk cuts off at its end; unread, they would fill
# the pipe the benchmark gives stderr and stall the reactor.
sys.stderr = open(os.devnull, "w")
from twisted.internet import reactor
from twisted.web import proxy, server
site = server.Site(proxy.ReverseProxyResource("127.0.0.1", int(sys.argv[2]), b""))
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
"""


def proxies(work: Path, nginx: str | None, upstream: int) -> dict[str, tuple[list[str], int]]:
    found = {}
    port = free_port()
    found["trioweb"] = ([TRIOWEB_PYTHON, str(ROOT / "examples" / "proxy" / "reverse_proxy.py"), str(port),
                         "127.0.0.1", str(upstream)], port)
    if Path(TWISTED_PYTHON).exists():
        script = work / "twisted_proxy.py"
        script.write_text(TWISTED_PROXY)
        port = free_port()
        found["twisted"] = ([TWISTED_PYTHON, str(script), str(port), str(upstream)], port)
    else:
        print(f"{TWISTED_PYTHON} is missing (scripts/bench creates it): Twisted skipped", file=sys.stderr)
    if nginx:
        port = free_port()
        conf = nginx_conf(work, "proxy", PROXY_HTTP.format(port=port, upstream=upstream))
        found["nginx"] = ([nginx, "-c", str(conf), "-p", str(work)], port)
    return found


def measure(name: str, command: list[str], port: int, work: Path, duration: float) -> tuple[str, ...]:
    base = f"http://127.0.0.1:{port}"
    with Server(command, port, cwd=work) as server:
        for path in (SMALL, BIG):
            subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{base}/{path}"], check=True, timeout=60)
        wrk(f"{base}/{SMALL}", 1)
        small = wrk(f"{base}/{SMALL}", duration, 50, server)
        big = wrk(f"{base}/{BIG}", duration, 4, server)
        peak = server.peak_rss_mib()
    # Failed requests (wrk's timeouts, mostly, on a loaded machine) are shown, not fatal.
    return (name, f"{small.requests_per_second:,.0f}", f"{small.p99_ms:.1f}", f"{small.cpu_us_per_request:.0f}",
            f"{big.requests_per_second:,.0f}", f"{big.p99_ms:.1f}",
            f"{big.cpu_us_per_request:.0f}", f"{peak:.0f}", f"{small.errors + big.errors}")


# -- the client alone ---------------------------------------------------------------------------

CLIENT_TASKS = 16


async def _fetch_ours(port: int, path: str, count: int) -> None:
    import trio

    from trioweb.proxy._pool import Upstream

    upstream = Upstream("127.0.0.1", port)
    request = f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def task(n: int) -> None:
        for _ in range(n):
            connection = upstream.take_idle() or await upstream.connect()
            await connection.send(request, 60)
            head = await connection.receive_head(b"GET", 60)
            assert head.status == 200
            while await connection.receive_body(60):
                pass
            upstream.put_back(connection)

    async with trio.open_nursery() as nursery:
        for _ in range(CLIENT_TASKS):
            nursery.start_soon(task, count // CLIENT_TASKS)
    upstream.close_idle()


async def _fetch_httpcore(port: int, path: str, count: int) -> None:
    import httpcore
    import trio

    url = f"http://127.0.0.1:{port}/{path}"
    async with httpcore.AsyncConnectionPool(max_connections=CLIENT_TASKS) as pool:

        async def task(n: int) -> None:
            for _ in range(n):
                async with pool.stream("GET", url) as response:
                    assert response.status == 200
                    async for _piece in response.aiter_stream():
                        pass

        async with trio.open_nursery() as nursery:
            for _ in range(CLIENT_TASKS):
                nursery.start_soon(task, count // CLIENT_TASKS)


def client_run(kind: str, port: int, path: str, count: int) -> None:
    """In a child process: fetch ``count`` times, print CPU µs per request and requests/s."""
    import trio

    fetch = _fetch_ours if kind == "ours" else _fetch_httpcore
    trio.run(fetch, port, path, CLIENT_TASKS * 4)  # warm up
    cpu, wall = time.process_time(), time.monotonic()
    trio.run(fetch, port, path, count)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(f"{cpu / count * 1e6:.1f} {count / wall:.1f}")


def measure_clients(upstream: int, duration: float) -> list[tuple[str, ...]]:
    rows = []
    for path, count in ((SMALL, int(4000 * duration)), (BIG, int(150 * duration))):
        figures = {}
        for kind in ("ours", "httpcore"):
            out = subprocess.run(pinned([TRIOWEB_PYTHON, __file__, "--client", kind, str(upstream), path,
                                         str(count)], 0), capture_output=True, text=True, check=True,
                                 cwd=ROOT / "scripts").stdout.split()
            figures[kind] = (float(out[0]), float(out[1]))
        for kind, label in (("ours", "trioweb.proxy (llhttp)"), ("httpcore", "httpcore 1.0")):
            cpu, rate = figures[kind]
            rows.append((path, label, f"{cpu:.0f}", f"{rate:,.0f}"))
        rows.append((path, "httpcore / ours, CPU", f"{figures['httpcore'][0] / figures['ours'][0]:.2f}x", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--client", nargs=4, metavar=("KIND", "PORT", "PATH", "COUNT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.client:
        kind, port, path, count = options.client
        client_run(kind, int(port), path, int(count))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/bench installs it)")
    nginx = nginx_binary()
    if not nginx:
        sys.exit("nginx is needed for the upstream")
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="trioweb-bench-proxy-"))
    try:
        work.chmod(0o755)
        files = work / "files"
        files.mkdir(mode=0o755)
        (files / SMALL).write_bytes(b"<!DOCTYPE html><title>x</title>" + b"x" * (1024 - 31))
        (files / BIG).write_bytes(os.urandom(MiB))
        upstream_port = free_port()
        conf = nginx_conf(work, "upstream", UPSTREAM_HTTP.format(port=upstream_port, files=files))
        upstream = subprocess.Popen(pinned([nginx, "-c", str(conf), "-p", str(work)], 1),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            rows = measure_each(proxies(work, nginx, upstream_port), measure, work, options.duration)
            report(rows, options.duration)
            print("measuring the clients ...", file=sys.stderr, flush=True)
            table("the HTTP client alone, 16 tasks, same upstream",
                  measure_clients(upstream_port, options.duration),
                  ("file", "client", "CPU us/req", "req/s"))
        finally:
            upstream.terminate()
            upstream.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")


def report(rows: list[tuple[str, ...]], duration: float) -> None:
    table(f"reverse proxies in front of one nginx upstream, loopback, {duration:g} s per figure", rows,
          ("proxy", "1 KiB req/s", "p99 ms", "CPU us/req", "1 MiB req/s (MiB/s)", "p99 ms", "CPU us/req",
           "peak RSS MiB", "failed"))
    figures = {row[0]: (float(row[1].replace(",", "")), float(row[3]), float(row[4].replace(",", "")),
                        float(row[6])) for row in rows}
    if "trioweb" in figures:
        ours = figures.pop("trioweb")
        for name, theirs in figures.items():
            if 0 in theirs:
                continue
            print(f"  trioweb/{name}: 1 KiB req/s {ours[0] / theirs[0]:.2f}x, CPU/req {ours[1] / theirs[1]:.2f}x; "
                  f"1 MiB req/s {ours[2] / theirs[2]:.2f}x, CPU/req {ours[3] / theirs[3]:.2f}x")


if __name__ == "__main__":
    main()
