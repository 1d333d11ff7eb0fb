"""A fixed number of keep-alive requests through a real trioweb server, in one
process, for deterministic profiles (not a benchmark: see scripts/bench).

    .venv/bin/python scripts/profile_requests.py hello|static|async N [--profile [FILTER]]

The server (``serve`` on 127.0.0.1) and a raw-socket client run in one trio
run: 200 warm-up requests, then N (a new connection every 500, below the
server's requests-per-connection limit). ``static`` serves a 1 KiB file old
enough to be kept in memory; ``async`` is the hello resource with an ``async
def`` render (the deferred path that ASGI applications take).

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
import re
import tempfile
import time

import trio

from trioweb import _request
from trioweb.resource import Resource
from trioweb.server import Site, serve
from trioweb.static import File

PER_CONNECTION = 500
# Under valgrind a request takes tens of milliseconds of wall time, past
# WATCH_AFTER: every deferred request would start its disconnect watcher, which
# at full speed almost none does, and the count would depend on the load.
_request.WATCH_AFTER = 3600.0


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"Hello, world!"


class AsyncHello(Resource):
    isLeaf = True

    async def render_GET(self, request: object) -> bytes:
        return b"Hello, world!"


def scenario_root(name: str, tmp: str) -> tuple[Resource, bytes]:
    if name == "static":
        os.mkdir(f"{tmp}/htdocs")
        with open(f"{tmp}/htdocs/1k.bin", "wb") as f:
            f.write(os.urandom(1024))
        time.sleep(1.1)  # a copy is kept only of a file whose ctime is settled
        return File(f"{tmp}/htdocs"), b"/1k.bin"
    return (AsyncHello() if name == "async" else Hello()), b"/"


async def client(port: int, request: bytes, count: int) -> None:
    """``count`` requests on one connection, each response read whole (Content-Length) before the next."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = b""
    for _ in range(count):
        await stream.send_all(request)
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buffer[:head_end]
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                if len(buffer) >= head_end + 4 + length:
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"unexpected response: {head!r}")
                    buffer = buffer[head_end + 4 + length:]
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


async def main(scenario: str, count: int, profile: bool, pattern: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, path = scenario_root(scenario, tmp)
        request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: profile\r\nAccept: */*\r\n\r\n"
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
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
    parser.add_argument("scenario", choices=("hello", "static", "async"))
    parser.add_argument("count", type=int)
    parser.add_argument("--profile", nargs="?", const="", default=None, metavar="FILTER")
    options = parser.parse_args()
    trio.run(main, options.scenario, options.count, options.profile is not None, options.profile or None)
