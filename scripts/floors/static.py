"""The floor of a Python static-file server on trio: trio sockets, one task
per connection, httptools, and per request only what serving a file as
Twisted users expect needs at least: the path looked up under the root, a
``stat`` (an edit is seen by the next request), the file's bytes kept in
memory while its size and mtime stay the same, Date / Last-Modified /
Content-Type / Content-Length, and an access log line (combined format) to
a buffered file. No checks of the request, no dotfile or symlink rules, no
conditionals or ranges. Not a server to use: what this much costs by
itself, for docs/design-notes.md.

    .venv/bin/python scripts/floors/static.py PORT ROOT LOGFILE   (then wrk against it)
"""

from __future__ import annotations

import os
import sys
import time
from email.utils import formatdate

import httptools
import trio
from _listen import serve_forever


class Requests:
    """The parsed requests' targets and headers, in order."""

    def __init__(self) -> None:
        self.completed: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.url = b""
        self.headers: dict[bytes, bytes] = {}

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_message_complete(self) -> None:
        self.completed.append((self.url, self.headers))
        self.headers = {}


class Files:
    """Kept file bodies with their response heads, revalidated by ``stat``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.kept: dict[str, tuple[float, int, bytes]] = {}

    def response(self, target: bytes, date: bytes) -> tuple[bytes, int, int]:
        path = os.path.join(self.root, target.split(b"?", 1)[0].decode().lstrip("/"))
        try:
            found = os.stat(path)
        except OSError:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n" + date + b"\r\n", 404, 0
        kept = self.kept.get(path)
        if kept is None or kept[0] != found.st_mtime or kept[1] != found.st_size:
            with open(path, "rb") as file:
                body = file.read()
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                    b"Last-Modified: %s\r\n" % (len(body), formatdate(found.st_mtime, usegmt=True).encode()))
            kept = self.kept[path] = (found.st_mtime, found.st_size, head + b"%s\r\n\r\n" + body)
        return kept[2] % date, 200, found.st_size


class Clock:
    """The Date header and the log's time stamp, made once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.date = self.stamp = b""

    def now(self) -> tuple[bytes, str]:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.date = b"Date: " + formatdate(second, usegmt=True).encode()
            self.stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
        return self.date, self.stamp


async def serve_connection(sock: trio.socket.SocketType, files: Files, clock: Clock, log) -> None:
    requests = Requests()
    parser = httptools.HttpRequestParser(requests)
    client = sock.getpeername()[0]
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
                date, stamp = clock.now()
                out = []
                for target, headers in requests.completed:
                    response, status, size = files.response(target, date)
                    out.append(response)
                    log.write(f'{client} - - [{stamp}] "GET {target.decode()} HTTP/1.1" {status} {size} '
                              f'"{headers.get(b"referer", b"-").decode()}" '
                              f'"{headers.get(b"user-agent", b"-").decode()}"\n')
                requests.completed.clear()
                await sock.send(b"".join(out))


async def main(port: int, root: str, log_path: str) -> None:
    files = Files(root)
    clock = Clock()
    with open(log_path, "a", buffering=65536) as log:
        await serve_forever(port, serve_connection, files, clock, log)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], sys.argv[3])
