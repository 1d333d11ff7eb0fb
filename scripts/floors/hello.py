"""The floor of a Python hello server on trio: trio sockets, one task per
connection, httptools, one fixed response, no checks, no log. Not a server
to use: what trio and the parser cost by themselves, for docs/design-notes.md.

    .venv/bin/python scripts/floors/hello.py PORT   (then wrk against it)
"""

from __future__ import annotations

import sys

import httptools
import trio
from _listen import serve_forever

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"


class Requests:
    """Counts the requests the parser completed."""

    def __init__(self) -> None:
        self.completed = 0

    def on_message_complete(self) -> None:
        self.completed += 1


async def serve_connection(sock: trio.socket.SocketType) -> None:
    requests = Requests()
    parser = httptools.HttpRequestParser(requests)
    with sock:
        while True:
            try:
                data = await sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            parser.feed_data(data)
            if requests.completed:
                await sock.send(RESPONSE * requests.completed)
                requests.completed = 0


async def main(port: int) -> None:
    await serve_forever(port, serve_connection)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
