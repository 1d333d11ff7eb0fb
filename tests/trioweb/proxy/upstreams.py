"""Upstream servers for the proxy tests: a trioweb echo, and raw sockets that misbehave."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import trio

from trioweb.resource import Resource


class Echo(Resource):
    """Answers with what it received, as JSON; remembers the client ports it saw."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.client_ports: list[int] = []

    def render(self, request):
        self.client_ports.append(getattr(request.getClientAddress(), "port", 0))
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-upstream", b"echo")
        return json.dumps({
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "version": request.clientproto.decode(),
            "headers": [[n.decode(), v.decode()] for n, vs in request.requestHeaders.getAllRawHeaders() for v in vs],
            "body": request.content.read().decode("latin-1"),
        }).encode()


RawHandler = Callable[[trio.SocketStream], Awaitable[None]]


async def start_raw(nursery: trio.Nursery, handler: RawHandler) -> int:
    """A TCP server on 127.0.0.1 that runs ``handler`` per connection; its port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    nursery.start_soon(trio.serve_listeners, guarded, listeners)
    return listeners[0].socket.getsockname()[1]


async def read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = await stream.receive_some(65536)
        if not piece:
            return data
        data += piece
    return data


def answering(response: bytes) -> RawHandler:
    """A handler that reads one request head and sends ``response`` as it is."""

    async def handler(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(response)
        await trio.sleep(0.2)

    return handler
