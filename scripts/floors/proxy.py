"""The floor of a Python reverse proxy on trio: trio sockets, httptools both
ways, a list of idle keep-alive upstream connections, GET only, no checks,
no limits, no timeouts. Not a proxy to use: what trio and the parser cost
by themselves for a proxied request, for docs/design-notes.md.

    .venv/bin/python scripts/floors/proxy.py PORT UPSTREAM_HOST UPSTREAM_PORT
"""

from __future__ import annotations

import sys

import httptools
import trio
from _listen import serve_forever

HOP_BY_HOP = (b"connection", b"content-length", b"transfer-encoding", b"keep-alive")


class RequestEvents:
    def __init__(self) -> None:
        self.target = b""
        self.completed: list[bytes] = []

    def on_url(self, piece: bytes) -> None:
        self.target += piece

    def on_message_complete(self) -> None:
        self.completed.append(self.target)
        self.target = b""


class ResponseEvents:
    def __init__(self) -> None:
        self.complete = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, piece: bytes) -> None:
        self.body.append(piece)

    def on_message_complete(self) -> None:
        self.complete = True


class Upstream:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.idle: list[trio.socket.SocketType] = []

    async def fetch(self, target: bytes) -> bytes:
        """The upstream's answer to GET ``target``, framed again for the client."""
        sock = self.idle.pop() if self.idle else None
        if sock is None:
            sock = trio.socket.socket()
            await sock.connect(self.address)
        await sock.send(b"GET %s HTTP/1.1\r\nHost: upstream\r\n\r\n" % target)
        events = ResponseEvents()
        parser = httptools.HttpResponseParser(events)
        while not events.complete:
            data = await sock.recv(65536)
            if not data:
                raise OSError("the upstream closed")
            parser.feed_data(data)
        self.idle.append(sock)
        body = b"".join(events.body)
        head = [b"HTTP/1.1 %d OK\r\n" % parser.get_status_code()]
        head += [name + b": " + value + b"\r\n" for name, value in events.headers if name.lower() not in HOP_BY_HOP]
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        return b"".join(head) + body


async def serve_connection(sock: trio.socket.SocketType, upstream: Upstream) -> None:
    events = RequestEvents()
    parser = httptools.HttpRequestParser(events)
    with sock:
        while True:
            try:
                data = await sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            parser.feed_data(data)
            for target in events.completed:
                await sock.send(await upstream.fetch(target))
            events.completed.clear()


async def main(port: int, upstream_host: str, upstream_port: int) -> None:
    upstream = Upstream((upstream_host, upstream_port))
    await serve_forever(port, serve_connection, upstream)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
