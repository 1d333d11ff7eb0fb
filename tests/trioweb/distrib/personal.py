"""The personal servers the distrib tests put behind a front, in this process:
a real one publishing a small site of test resources, and hostile ones
that speak rpc directly, hang, or send garbage."""

from __future__ import annotations

import os
import pwd
from types import SimpleNamespace

import trio

import rpc
from trioweb.distrib import ResourcePublisher, ResourceSubscription, serve_publisher
from trioweb.resource import NOT_DONE_YET, Resource
from trioweb.server import Site
from trioweb.static import Data


class Echo(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"x-seen", b"%r %r %r" % (request.prepath, request.postpath, request.args))
        return b"url=" + request.prePathURL() + b" client=" + request.getClientAddress().host.encode()

    def render_POST(self, request):
        return b"%d %s" % (len(request.content.read()), request.getHeader(b"content-type") or b"-")


class Big(Resource):
    """Streams ``?mib=N`` MiB (default 4) in 64 KiB writes."""

    isLeaf = True

    def render_GET(self, request):
        mib = int(request.args.get(b"mib", [b"4"])[0])

        async def produce():
            piece = b"x" * 65536
            for _ in range(mib * 16):
                request.write(piece)
                await request.drain()
            request.finish()

        request.start_soon(produce)
        return NOT_DONE_YET


def pattern(size: int) -> bytes:
    block = bytes(index * 7 % 251 for index in range(65521))  # a prime period: misplaced bytes show
    return (block * (size // len(block) + 1))[:size]


class Sized(Resource):
    """``?mib=N`` MiB in 1 MiB writes, with a Content-Length (unless ``&chunked=1``)."""

    isLeaf = True

    def render_GET(self, request):
        size = int(request.args.get(b"mib", [b"1"])[0]) << 20
        if not request.args.get(b"chunked"):
            request.setHeader(b"content-length", b"%d" % size)

        async def produce():
            body = pattern(size)
            for start in range(0, size, 1 << 20):
                request.write(body[start : start + (1 << 20)])
                await request.drain()
            request.finish()

        request.start_soon(produce)
        return NOT_DONE_YET


class Whole(Resource):
    """A complete response too large to be the call's answer itself (1 MiB, returned at once)."""

    isLeaf = True
    body = bytes(range(256)) * 4096

    def render_GET(self, request):
        return self.body


class ShowHeaders(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"\n".join(name + b": " + b",".join(values)
                          for name, values in request.requestHeaders.getAllRawHeaders())


class Async(Resource):
    isLeaf = True
    stream_request_body = True
    max_request_body = 64 * 1024 * 1024

    async def render_GET(self, request):
        await trio.sleep(0.01)
        return b"awaited"

    async def render_POST(self, request):
        total = 0
        async for piece in request.body_stream():
            total += len(piece)
        return b"%d" % total


class Boom(Resource):
    isLeaf = True

    def render_GET(self, request):
        raise RuntimeError("secret remote detail")


class Cookies(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.addCookie(b"theme", b"dark", path=b"/")
        request.addCookie(b"other", b"1", domain=b"example.org")
        request.redirect(bytes(request.URLPath().child(b"next")))
        return b""


class Upload(Resource):
    isLeaf = True
    max_request_body = 64 * 1024 * 1024

    def render_POST(self, request):
        return b"%d" % len(request.content.read())


def personal_root():
    root = Resource()
    root.putChild(b"", Data(b"personal home", "text/plain"))
    root.putChild(b"echo", Echo())
    root.putChild(b"big", Big())
    root.putChild(b"sized", Sized())
    root.putChild(b"whole", Whole())
    root.putChild(b"boom", Boom())
    root.putChild(b"cookies", Cookies())
    root.putChild(b"upload", Upload())
    root.putChild(b"async", Async())
    root.putChild(b"headers", ShowHeaders())
    return root


async def unix_listener(path):
    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen(16)
    return trio.SocketListener(sock)


async def start_personal(nursery, path, root=None):
    listener = await unix_listener(path)
    await nursery.start(serve_publisher, ResourcePublisher(Site(root or personal_root())), [listener])
    return listener


async def front_to_personal(start_site, nursery, tmp_path, root=None, **options):
    """A front forwarding ~alice to a personal server of ``root``: (site, subscription)."""
    path = str(tmp_path / "pb.sock")
    await start_personal(nursery, path, root)
    subscription = ResourceSubscription("unix", path, **options)
    front_root = Resource()
    front_root.putChild(b"~alice", subscription)
    return await start_site(front_root), subscription


class Hang:
    """Waits until cancelled; counts the waits running, the most at once, and those cancelled."""

    def __init__(self):
        self.running = self.peak = self.cancelled = 0

    async def until_cancelled(self):
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def front_with_a_neighbour(start_site, nursery, tmp_path, hostile_path):
    """A front with ~mallory at ``hostile_path`` and ~alice at a real personal server."""
    good = str(tmp_path / "good.sock")
    await start_personal(nursery, good)
    root = Resource()
    root.putChild(b"~mallory", ResourceSubscription("unix", hostile_path))
    root.putChild(b"~alice", ResourceSubscription("unix", good))
    return await start_site(root)


async def fake_backend(nursery, path, behaviour):
    """A UNIX socket server that runs ``behaviour(stream)`` per connection."""
    listener = await unix_listener(path)
    nursery.start_soon(trio.serve_listeners, behaviour, [listener])


class Publisher(rpc.Referenceable):
    """A hostile "personal server" speaking rpc directly: each request gets
    ``answer(message, body, front)``, ``front`` being the front's root on the
    connection (where ``response(message["token"], head, stream)`` goes)."""

    def __init__(self, answer, broker):
        self.answer = answer
        self.broker = broker

    async def remote_request(self, message, body):
        return await self.answer(message, body, await self.broker.getRootObject())


async def serve_hostile(nursery, path, answer):
    await nursery.start(rpc.serve_unix, path, lambda broker: Publisher(answer, broker))


async def hostile_front(start_site, nursery, tmp_path, answer):
    path = str(tmp_path / "hostile.sock")
    await serve_hostile(nursery, path, answer)
    root = Resource()
    root.putChild(b"~mallory", ResourceSubscription("unix", path, backend_timeout=1))
    return await start_site(root)


def account_with_home(tmp_path, name: str = "alice"):
    """(an account entry for ``name``, with our uid and a 0755 home in ``tmp_path``,
    and a user database holding only it) for a ``UserDirectory``."""
    me = pwd.getpwuid(os.getuid())
    home = tmp_path / name
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    user = SimpleNamespace(pw_name=name, pw_uid=me.pw_uid, pw_gid=me.pw_gid, pw_gecos="", pw_dir=str(home))
    return user, SimpleNamespace(getpwnam={name: user}.__getitem__, getpwall=lambda: [user])
