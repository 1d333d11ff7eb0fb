"""A fixed number of keep-alive requests through a real trioweb server, in one
process, for deterministic profiles (not a benchmark: see scripts/bench).

    .venv/bin/python scripts/profile_requests.py SCENARIO N [--profile [FILTER]]

The server (``serve`` on 127.0.0.1) and a raw-socket client run in one trio
run: 200 warm-up requests, then N (a new connection every 500, below the
server's requests-per-connection limit). ``static`` serves a 1 KiB file old
enough to be kept in memory; ``static-cli`` the same file through the root
``trioweb --path`` builds (with its processors for ``.rpy``, ``.asis`` and
``.cgi``, as ``scripts/bench static`` serves it); ``async`` is the hello resource with an ``async
def`` render (the deferred path that ASGI applications take); ``wsgi`` and ``asgi`` the
hello as a WSGI and an ASGI application; ``proxy`` is a
``ReverseProxyResource`` before a second server (the hello resource) in the
same run, so a request's count is the proxy's and the upstream's together. ``distrib``
and ``distrib-1m`` go through a front: its ``ResourceSubscription`` forwards
to a personal server (``serve_publisher``, its own ``Site``, access log on)
on a UNIX socket in a temporary directory, in the same trio run; the
personal server answers the hello, or 1 MiB (relayed by splice).

``--profile``: the top self-time functions of the N requests (cProfile, the
client included), restricted to names matching the regular expression FILTER
if given. Instruction counts, which do not depend on the machine's load:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python scripts/profile_requests.py static 2500

and the same with 500: the difference of the two totals ("Collected"),
divided by 2000, is the cost of one request (start-up and warm-up cancel out).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable

import trio

from trioweb import _request
from trioweb.asgi import ASGIResource
from trioweb.cli._static_options import static_root
from trioweb.distrib import ResourcePublisher, ResourceSubscription, serve_publisher
from trioweb.endpoints import UNIXEndpoint, open_listeners
from trioweb.proxy import ReverseProxyResource
from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.static import File
from trioweb.wsgi import WSGIResource

PER_CONNECTION = 500
# Under valgrind a request takes tens of milliseconds of wall time, past
# WATCH_AFTER: every deferred request would start its disconnect watcher, which
# at full speed almost none does, and the count would depend on the load.
_request.WATCH_AFTER = 3600.0


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"Hello, world!"


class Big(Resource):
    isLeaf = True
    body = b"x" * (1024 * 1024)

    def render_GET(self, request: object) -> bytes:
        return self.body


class AsyncHello(Resource):
    isLeaf = True

    async def render_GET(self, request: object) -> bytes:
        return b"Hello, world!"


def wsgi_hello(environ: dict, start_response: Callable[..., object]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


async def asgi_hello(scope: dict, receive: object, send: Callable[[dict], Awaitable[None]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


def scenario_root(name: str, tmp: str) -> tuple[Resource, bytes]:
    if name in ("static", "static-cli"):
        os.mkdir(f"{tmp}/htdocs")
        with open(f"{tmp}/htdocs/1k.bin", "wb") as f:
            f.write(os.urandom(1024))
        time.sleep(1.1)  # a copy is kept only of a file whose ctime is settled
        if name == "static":
            return File(f"{tmp}/htdocs"), b"/1k.bin"
        options = {"path": f"{tmp}/htdocs", "resource_script": None, "index": (), "mime_type": None,
                   "ignore_ext": (), "allow_ignore_ext": False, "processor": (), "follow_symlinks": False}
        root = static_root(options, load=lambda name: None)
        assert root is not None
        return root, b"/1k.bin"
    if name == "wsgi":
        return WSGIResource(wsgi_hello), b"/"
    if name == "asgi":
        return ASGIResource(asgi_hello), b"/"
    return (AsyncHello() if name == "async" else Hello()), b"/"


async def client(port: int, request: bytes, count: int) -> None:
    """``count`` requests on one connection, each response read whole (Content-Length) before the next.

    A body longer than what came with its head is counted as it comes, not kept."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = b""
    for _ in range(count):
        await stream.send_all(request)
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buffer[:head_end]
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head!r}")
                if len(buffer) >= head_end + 4 + length:
                    buffer = buffer[head_end + 4 + length:]
                    break
                if length > 65536:  # a large body: count the rest (one response at a time, lock-step)
                    left = head_end + 4 + length - len(buffer)
                    while left > 0:
                        data = await stream.receive_some(min(left, 1024 * 1024))
                        if not data:
                            raise RuntimeError("the server closed the connection")
                        left -= len(data)
                    buffer = b""
                    break
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("the server closed the connection")
            buffer += data
    await stream.aclose()


def print_profile(profile: cProfile.Profile, count: int, pattern: str | None) -> None:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())
    rows = [(key, entry) for key, entry in stats.items() if not pattern or re.search(pattern, key[0] + key[2])]
    rows.sort(key=lambda row: -row[1][2])
    print(f"{count} requests, {total * 1e6 / count:.0f} us of self-time per request under cProfile (client included)")
    for (filename, line, function), (_, calls, self_time, _, _) in rows[:int(os.environ.get("PROFILE_ROWS", "15"))]:
        where = re.sub(r".*/(site-packages|scripts)/", "", filename)
        where = re.sub(r".*/(trioweb|rpc)/", r"\1/", where)
        print(f"  {self_time / total * 100:5.1f}%  {calls / count:4.1f}/req  {where}:{line}({function})")


async def start_personal_server(nursery: trio.Nursery, tmp: str) -> Resource:
    """A personal server on a UNIX socket in ``tmp``, and the front's resource that forwards to it."""
    personal = Resource()
    personal.putChild(b"hello", Hello())
    personal.putChild(b"big", Big())
    path = f"{tmp}/personal.sock"
    listeners = await nursery.start(_open_unix, path)
    site = Site(personal, logPath=f"{tmp}/personal.log")
    await nursery.start(serve_publisher, ResourcePublisher(site), listeners)
    return ResourceSubscription("unix", path)


async def _open_unix(path: str, *, task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]]) -> None:
    async with open_listeners([UNIXEndpoint(path)]) as listeners:
        task_status.started(listeners)
        await trio.sleep_forever()


async def main(scenario: str, count: int, profile: bool, pattern: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            if scenario.startswith("distrib"):
                root = Resource()
                root.putChild(b"u", await start_personal_server(nursery, tmp))
                path = b"/u/big" if scenario == "distrib-1m" else b"/u/hello"
            elif scenario == "proxy":
                upstream, path = scenario_root("hello", tmp)
                upstream_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                await nursery.start(serve, Site(upstream), upstream_listeners)
                root = ReverseProxyResource("127.0.0.1", upstream_listeners[0].socket.getsockname()[1], b"/")
            else:
                root, path = scenario_root(scenario, tmp)
            request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: profile\r\nAccept: */*\r\n\r\n"
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(serve, Site(root, logPath=f"{tmp}/access.log"), listeners)
            await client(port, request, 200)  # warm-up
            profiler = cProfile.Profile()
            if profile:
                profiler.enable()
            for start in range(0, count, PER_CONNECTION):
                await client(port, request, min(PER_CONNECTION, count - start))
            if profile:
                profiler.disable()
                print_profile(profiler, count, pattern)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("hello", "static", "static-cli", "async", "wsgi", "asgi", "distrib",
                                             "distrib-1m", "proxy"))
    parser.add_argument("count", type=int)
    parser.add_argument("--profile", nargs="?", const="", default=None, metavar="FILTER")
    options = parser.parse_args()
    # trio reverses each batch of runnable tasks at random; seeded, the order
    # (and so the count) is the same from run to run: it matters where one
    # request waits on another in the same run (the proxy scenario).
    getattr(trio._core._run, "_r", random).seed(0)
    trio.run(main, options.scenario, options.count, options.profile is not None, options.profile or None)
