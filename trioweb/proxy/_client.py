"""One HTTP/1.1 connection to an upstream server, as a proxy uses it.

Theory of operation
-------------------
A proxy sends one request at a time on a connection (no pipelining), so a
connection is either idle in its pool or carrying one exchange:

1. ``send`` the request head, then the body if there is one (a proxy
   streams it: see ``_relay``);
2. ``receive_head``: bytes are read until the blank line that ends a head
   (at most ``MAX_HEAD_BYTES``), and only the head is given to llhttp
   (through ``httptools``), so that what follows it is known to be body.
   Interim 1xx heads are skipped; 101 is refused (a proxy switches to no
   other protocol). The head is checked as every relayed head is
   (``trioweb.http.check_status``, ``check_fields``);
3. ``receive_body`` gives the body in pieces as they come, unframed, and
   ``b""`` at its end. The framing is the upstream's: Content-Length,
   chunked, or the end of the connection. A HEAD request, a 204 or a 304 has
   no body whatever the head says.

After a complete response the connection is ``reusable`` if both sides
keep it alive and the upstream sent nothing past the response. Anything
else (a failure, a response cut short, one delimited by the connection's
end) leaves it unusable, and its owner closes it.

Errors: ``UpstreamClosed`` when the upstream closes or resets the
connection (``nothing_received`` says whether any byte of the response had
come, which is what decides if a request may be retried), and
``BadUpstreamResponse`` for anything malformed, ``trio.TooSlowError`` when
a wait for the upstream (to take bytes, or to send some) lasts longer than
the timeout given. The I/O is trioweb.http's ``Transport``, as for the
client side: a ready socket costs one system call and no cancel scope.
The first read after a request is sent comes after one yield
(``_receive``'s ``just_sent``, as the transport's docstring explains).
Waiting for the upstream's answer on a plain socket, when it must, costs no cancel scope
either: the wait is registered with the run's ``DelayedStarts`` for the
timeout, which wakes it with ``notify_closing`` if it is still waiting then
(``_wait_readable``).
"""

from __future__ import annotations

import select
from dataclasses import dataclass

import httptools
import trio

from trioweb._delayed import delayed_starts
from trioweb.http import BadUpstreamResponse, check_fields, check_status, status_has_no_body, transport_for

READ_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024


class UpstreamClosed(Exception):
    """The upstream closed or reset the connection before the response was complete."""

    def __init__(self, message: str, nothing_received: bool) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes | None
    headers: list[tuple[bytes, bytes]]  # as received (hop-by-hop included), names in lower case
    content_length: int | None  # None: chunked, delimited by the connection's end, or no body


class _Events:
    """Collects what llhttp reports (httptools calls these by name)."""

    __slots__ = ("body", "complete", "headers", "messages", "reason")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False
        self.messages = 0

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class UpstreamConnection:
    """A connection to an upstream; see the theory of operation."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.transport = transport_for(stream)
        # The socket to wait on directly (None: a TLS stream, waited on through the transport).
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._timed_out = False
        self.reused = False  # it has carried an exchange before this one
        self.reusable = False  # the exchange ended cleanly: it may go back to the pool
        self.idle_since = 0.0
        self._buffer = b""
        self._events = _Events()
        self._parser: httptools.HttpResponseParser | None = None
        self._body_done = False
        self._until_close = False  # the body ends with the connection
        self._keep_alive = False
        self._spoiled = False  # something went wrong that the framing does not show

    async def send(self, data: bytes, timeout: float) -> None:
        try:
            await self.transport.send_all(data, timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise UpstreamClosed(f"the upstream closed the connection ({exc})", not self._buffer) from None

    async def _receive(self, timeout: float, *, just_sent: bool = False) -> bytes:
        """The next bytes from the upstream (``b""`` at its end).

        ``just_sent``: the request went out with no yield since, so the
        upstream has had no time to answer: we yield once before the read
        (see "Reading the answer to something just sent" in trioweb.http's
        ``_transport``).
        """
        transport = self.transport
        try:
            if self._socket is None:
                return await transport.receive(READ_SIZE, timeout)
            if just_sent:
                await trio.lowlevel.cancel_shielded_checkpoint()
            data = transport.try_receive(READ_SIZE)
            while data is None:
                await self._wait_readable(timeout)
                data = transport.try_receive(READ_SIZE)
            return data
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise UpstreamClosed(f"the connection to the upstream failed ({exc})", False) from None

    async def _wait_readable(self, timeout: float) -> None:
        """Wait until the socket is readable; ``trio.TooSlowError`` after ``timeout``."""
        assert self._socket is not None
        timers = delayed_starts(timeout)
        timers.add(self, self._time_out)
        try:
            await trio.lowlevel.wait_readable(self._socket)
        except trio.ClosedResourceError:
            if self._timed_out:
                raise trio.TooSlowError from None
            raise
        finally:
            timers.discard(self)

    def _time_out(self) -> None:
        """Wake the wait in ``_wait_readable``: its time is up. The connection is spoilt."""
        self._timed_out = True
        self.spoil()
        assert self._socket is not None
        trio.lowlevel.notify_closing(self._socket)

    async def receive_head(self, method: bytes, timeout: float) -> ResponseHead:
        """The final response head (interim 1xx skipped); see the theory of operation."""
        self.reusable = False
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise BadUpstreamResponse("response head too large")
                data = await self._receive(timeout, just_sent=not self._buffer)
                if not data:
                    raise UpstreamClosed("the upstream closed the connection before a response",
                                         not self._buffer)
                self._buffer += data
                end = self._buffer.find(b"\r\n\r\n", max(0, len(self._buffer) - len(data) - 3))
            head, self._buffer = self._buffer[: end + 4], self._buffer[end + 4:]
            events, parser = self._events, self._parser
            if parser is not None and events.complete:
                events.reset()  # llhttp ended the last message itself: it is ready for the next
            else:  # the first, or after a message llhttp could not end (an answer to HEAD)
                events = self._events = _Events()
                parser = self._parser = httptools.HttpResponseParser(events)
            try:
                parser.feed_data(head)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                raise BadUpstreamResponse(f"malformed response head: {exc}") from None
            status = parser.get_status_code()
            if 100 <= status < 200 and status != 101:
                continue  # interim (100 Continue, 103 Early Hints): the final head follows
            check_status(status, events.reason or None)
            check_fields(events.headers)
            return self._framed(method, status, events, parser)

    def _framed(self, method: bytes, status: int, events: _Events,
                parser: httptools.HttpResponseParser) -> ResponseHead:
        length: int | None = None
        chunked = False
        for name, value in events.headers:
            if name == b"content-length":
                length = int(value)  # llhttp checked: digits only, not repeated, not with chunked
            elif name == b"transfer-encoding":
                chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
                if not chunked:
                    length = None
        self._keep_alive = parser.should_keep_alive()
        # llhttp completes a message at its head when it has no body (204, 304,
        # Content-Length: 0); it cannot know a HEAD request's answer has none.
        self._body_done = events.complete or method == b"HEAD" or status_has_no_body(status)
        self._until_close = False
        if self._body_done:
            self._finish()
        elif not chunked and length is None:
            self._until_close = True  # ends with the connection; llhttp reads it as such
        return ResponseHead(status, events.reason or None, events.headers, length)

    async def receive_body(self, timeout: float) -> bytes:
        """The next piece of the body, ``b""`` at its end."""
        events = self._events
        while True:
            if events.body:
                piece = events.body[0] if len(events.body) == 1 else b"".join(events.body)
                events.body.clear()
                return piece
            if self._body_done:
                return b""
            if self._buffer:
                data, self._buffer = self._buffer, b""
            else:
                data = await self._receive(timeout)
                if not data:
                    if self._until_close:
                        self._body_done = True
                        return b""
                    raise UpstreamClosed("the upstream closed the connection in the middle of the body", False)
            self._feed_body(data)

    def body_if_received(self) -> bytes | None:
        """The whole body if it came with the head (a small response: sent
        to the client in one piece, no wait), else None (then ``receive_body``
        gives it, what came already first)."""
        if not self._body_done and self._buffer:
            data, self._buffer = self._buffer, b""
            self._feed_body(data)
        if not self._body_done:
            return None
        body = self._events.body
        piece = b"".join(body)
        body.clear()
        return piece

    def _feed_body(self, data: bytes) -> None:
        events = self._events
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not events.complete:
                raise BadUpstreamResponse(f"malformed response body: {exc}") from None
            events.messages += 1  # bytes past the response: the connection is not reused
        if events.complete:
            self._body_done = True
            self._finish()

    @property
    def body_complete(self) -> bool:
        """The whole body has been received (nothing left to wait for)."""
        return self._body_done and not self._events.body

    def spoil(self) -> None:
        """Never reuse this connection (the exchange on it was cut short)."""
        self._spoiled = True
        self.reusable = False

    def _finish(self) -> None:
        self.reusable = (self._keep_alive and not self._buffer and self._events.messages <= 1
                         and not self._until_close and not self._spoiled)

    def looks_alive(self) -> bool:
        """An idle connection the upstream has not closed (one non-blocking peek)."""
        sock = _socket_of(self.stream)
        if sock is None:
            return True
        # Readable while idle means closed (EOF or reset) or garbage sent
        # unasked (a parting 408): either way it is not to be used.
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        """Close at once, without waiting (trio closes a socket synchronously)."""
        self.spoil()
        sock = _socket_of(self.stream)
        if sock is not None:
            sock.close()


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None
