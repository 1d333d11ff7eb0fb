"""Render resources through the real ``Site`` and ``Request``, in memory, for tests.

``await fetch(root, b"/path")`` makes the request a client would send (its
head parsed by the real parser, so it obeys the same rules), runs it through
a ``Site`` exactly as a request from a socket (traversal, body limits, render
dispatch, ``NOT_DONE_YET`` and ``async def`` renders, error pages), and
returns the ``MemoryResponse``: status, headers, body. What a test cannot do
here is look at framing (Content-Length against the bytes sent, chunking,
keep-alive): tests about those talk to a real server over a socket.

``MemoryChannel`` is the ``Channel`` behind it, for tests that need more:
``disconnect()`` makes the client go away (a deferred response's watcher
sees it, writes are dropped, ``notifyFinish`` raises ``ConnectionLost``).

This is what Twisted's ``DummyRequest`` is for, with the real request
object instead of a stand-in that drifts from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from trioweb.address import Address, IPv4Address
from trioweb.http import (
    BodyTooLarge,
    ConnectionLost,
    Limits,
    ParseError,
    RequestHead,
    RequestParser,
    read_pipe,
    status_has_no_body,
)
from trioweb.resource import Resource
from trioweb.server import Site

__all__ = ["MemoryChannel", "MemoryResponse", "fetch"]

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 8080)


@dataclass
class MemoryResponse:
    """What a request got: ``code``, ``phrase``, ``headers`` (lower-case
    names, in order), ``body``; ``complete`` is False if the response ended
    short of its Content-Length or was cut off by a lost client."""

    code: int
    phrase: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The last value of the header ``name`` (lower-case), or None."""
        values = self.header_list(name)
        return values[-1] if values else None

    def header_list(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


class MemoryChannel:
    """A ``Channel`` without a socket: the body is given as bytes, the response kept."""

    def __init__(self, head: RequestHead, body: bytes = b"", *, client: Address = CLIENT, host: Address = HOST,
                 is_secure: bool = False) -> None:
        self.head = head
        self.client = client
        self.host = host
        self.is_secure = is_secure
        self.lost = False
        self.response_started = False
        self.response_done = False
        self.response: MemoryResponse | None = None
        self._body = body
        self._body_given = False
        self._gone = trio.Event()
        self._send_body = True
        self._remaining: int | None = None

    def disconnect(self) -> None:
        """The client goes away."""
        self.lost = True
        self._gone.set()

    def declared_body_size(self) -> int | None:
        assert self.head is not None
        return None if self.head.chunked else (self.head.content_length or 0)

    async def receive_body_chunk(self, max_size: int) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.lost:
            raise ConnectionLost("the client went away")
        if self._body_given:
            return b""
        self._body_given = True
        if len(self._body) > max_size:
            raise BodyTooLarge
        return self._body

    def start_response(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]],
                       content_length: int | None) -> None:
        assert self.head is not None and not self.response_started
        self.response_started = True
        self._send_body = not status_has_no_body(code) and self.head.method != b"HEAD"
        if content_length is not None and not status_has_no_body(code):
            headers = [*headers, (b"content-length", b"%d" % content_length)]
            self._remaining = content_length if self._send_body else None
        self.response = MemoryResponse(code, phrase, headers)

    def write(self, data: bytes) -> None:
        assert self.response is not None
        if not self._send_body:
            return
        if self._remaining is not None:
            if len(data) > self._remaining:
                raise ValueError("response body longer than its Content-Length")
            self._remaining -= len(data)
        self.response.body += data

    def end_response(self) -> None:
        assert self.response is not None
        self.response_done = True
        self.response.complete = not self._remaining and not self.lost

    def has_output(self) -> bool:
        return False  # everything written is "sent" at once

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.lost:
            raise ConnectionLost("the client went away")

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            piece = os.pread(fd, min(count, 65536), offset)
            if not piece:
                raise ValueError("file shorter than the range being sent")
            self.write(piece)
            offset += len(piece)
            count -= len(piece)
            await self.flush()

    async def send_pipe(self, fd: int, count: int, on_sent: Callable[[int], None]) -> None:
        for piece in read_pipe(fd, count, on_sent, 65536):
            self.write(piece)
            await self.flush()

    async def watch_for_disconnect(self) -> None:
        await self._gone.wait()


def request_head(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> RequestHead:
    """The head the real parser makes of this request (``Host: localhost``
    unless given, a Content-Length for a body); ValueError if it refuses it."""
    headers = list(headers)
    names = {name.lower() for name, _ in headers}
    if b"host" not in names:
        headers.insert(0, (b"Host", b"localhost"))
    if body and not names & {b"content-length", b"transfer-encoding"}:
        headers.append((b"Content-Length", b"%d" % len(body)))
    raw = b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, b"".join(b"%s: %s\r\n" % pair for pair in headers))
    parser = RequestParser(Limits())
    parser.feed(raw)
    event = parser.events.popleft() if parser.events else None
    if isinstance(event, ParseError):
        raise ValueError(f"the parser refuses this request: {event.status} {event.reason}")
    if not isinstance(event, RequestHead):
        raise ValueError("the request head is incomplete")
    return event


async def fetch(
    root: Resource | Site,
    target: bytes = b"/",
    *,
    method: bytes = b"GET",
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    secure: bool = False,
    client: Address = CLIENT,
) -> MemoryResponse:
    """Request ``target`` of ``root`` (a resource, served by a default
    ``Site``, or a Site) in memory; see the module docstring."""
    site = root if isinstance(root, Site) else Site(root)
    head = request_head(method, target, headers, body)
    channel = MemoryChannel(head, body, client=client, is_secure=secure)
    await site.process(site.requestFactory(site, channel, head))
    if channel.response is None:
        raise RuntimeError(f"{method!r} {target!r} got no response at all")
    return channel.response
