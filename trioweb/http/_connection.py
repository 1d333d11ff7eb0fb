"""One HTTP/1.x connection driven by one trio task.

Theory of operation
-------------------
``HTTPConnection.run()`` loops: wait for a request head (keep-alive idle
timeout until its first byte, then the header deadline for the whole head),
hand it to the ``handler``, flush the response, and go on while the
connection may persist. Requests on one connection are handled strictly one
after the other, so pipelined requests are answered in order.

The handler (``Site.handle`` in ``trioweb.server``) is called with each
head; it returns None when it answered without waiting (no coroutine is made
for that common case) or an awaitable for the rest. It talks back through a
few primitives:

- ``receive_body_chunk()`` reads the body, sending ``100 Continue`` first if
  the client waits for it, and enforcing the body size and idle timeout;
- ``start_response()``, ``write()``, ``end_response()`` frame the response
  (Content-Length, chunked, or close-delimited; no body for HEAD, 1xx, 204
  and 304) into an output buffer without any I/O;
- ``flush()`` sends the buffer (bounded by the send timeout);
- ``watch_for_disconnect()`` is run by handlers whose response outlives the
  first call into the resource: it keeps reading (pipelined bytes go to the
  parser) so that a client going away is noticed while nothing is written;
  ``cancel_task()`` then stops a handler that has no cancel scope of its own;
- ``take_over_stream()`` ends HTTP on the connection after a 2xx answer to
  CONNECT: the handler gets the raw byte stream (a tunnel), see its docstring.

A response produced synchronously costs no task, no channel and one
``send_all``; responses to pipelined requests that are already parsed are
coalesced into one send.

Fairness: a client whose bytes are always ready never waits, so every
receive path yields to the scheduler after ``YIELD_EVERY_BYTES`` or
``YIELD_EVERY_READS`` reads without a wait; the parser joins the body bytes of
one read into one event, so tiny chunks cost no more events than big ones.
Deadlines: computed from a start time, and clamped at zero when they have
passed (a late wake-up then times out instead of failing). A request body
must keep up a minimum rate (``Limits.min_body_rate``, see
``receive_body_chunk``), so a body trickled a byte at a time ends in 408.

Errors: a ``ParseError`` from the parser gets its status and the connection
closes; a timeout while reading a head gets 408 (or a silent close when the
client sent nothing); a client that is gone ends the connection quietly. The
handler sees a vanished client as ``ConnectionLost`` from these primitives.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable

import trio

from trioweb.address import Address
from trioweb.http._channel import read_pipe
from trioweb.http._limits import Limits
from trioweb.http._parser import END_OF_MESSAGE, ParseError, RequestHead, RequestParser
from trioweb.http._syntax import status_has_no_body
from trioweb.http._transport import Transport, readable_now, transport_for
from trioweb.http._writer import (
    CONTINUE_100,
    LAST_CHUNK,
    DateHeader,
    chunk,
    error_response,
    length_text,
    serialize_head,
)

log = logging.getLogger("trioweb.http")

READ_SIZE = 65536
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
# Bytes left unread in a request body that we are willing to read and drop to
# keep the connection; beyond this the connection is closed instead.
MAX_DISCARD = 256 * 1024
# How long a connection closed after an error keeps draining the client's input.
LINGER_SECONDS = 2.0
# At a graceful stop, how long a connection that has sent no request yet may
# take to send its first: its client connected to send one (and may be
# between its connect and its send); one that sends nothing is closed then.
FIRST_REQUEST_GRACE = 1.0
# How much pipelined input the disconnect watcher may buffer before it stops
# reading (the client is then throttled by TCP until we catch up).
MAX_READ_AHEAD = 256 * 1024
# Output pieces are joined into one write up to this total size; beyond it
# (and up to this many pieces) they are gathered by writev instead of copied.
JOIN_UP_TO = 64 * 1024
MAX_GATHERED = 64
# A receive path yields to other tasks after this many bytes or reads that did not wait.
YIELD_EVERY_BYTES = 256 * 1024
YIELD_EVERY_READS = 16

_date_header = DateHeader()


class ConnectionLost(Exception):
    """The client went away (or stopped reading) before the exchange was over."""


class BodyTooLarge(Exception):
    """The request body exceeds the limit that applies to it."""


class BodyTimeout(Exception):
    """The client stopped sending the request body, or sends it too slowly."""


def time_left(deadline: float) -> float:
    """Seconds until ``deadline``, never negative (a passed deadline is 0: time out at once)."""
    return max(deadline - trio.current_time(), 0.0)


# A handler answers a request head: it returns None when it is done (the
# response was framed without a wait), or an awaitable for the rest.
Handler = Callable[["HTTPConnection", RequestHead], Awaitable[None] | None]


def _input_waiting(stream: trio.abc.Stream) -> bool:
    """Whether bytes from the client wait unread in ``stream``'s socket (without waiting)."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(transport, "socket", None)
    return sock is not None and readable_now(sock.fileno())


class HTTPConnection:
    """Serves the requests of one client over one ``trio.abc.Stream``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        handler: Handler,
        limits: Limits,
        *,
        client: Address,
        host: Address,
        is_secure: bool = False,
        server_header: bytes = b"trioweb",
        task_host: trio.Nursery | None = None,
    ) -> None:
        self.stream = stream
        # Where a request's tasks run beside it (``Request.start_soon``, the
        # disconnect watcher): a nursery that outlives the request, so that a
        # deferred response needs none of its own (None: it opens one).
        self.task_host = task_host
        self.transport = transport_for(stream)
        self.handler = handler
        self.limits = limits
        self.client = client
        self.host = host
        self.is_secure = is_secure
        self.server_header = server_header
        self.parser = RequestParser(limits)
        self.lost = False
        self.draining = False  # the server is stopping: finish this exchange, then close
        self._scope = trio.CancelScope()
        self.idle_since: float | None = None  # set while waiting for a request's first byte
        self._out: list[bytes] = []
        self._requests_served = 0
        self._linger = False  # closing with unread input: drain before closing
        self._unyielded_bytes = 0  # received since this task last yielded to the scheduler
        self._unyielded_reads = 0
        self.taken_over = False  # see take_over_stream
        self._watching: trio.CancelScope | None = None  # the disconnect watcher's reads
        self._reset_body_state()
        self._reset_exchange(None)

    def _reset_exchange(self, head: RequestHead | None) -> None:
        self.head = head
        if head is not None and (head.chunked or head.content_length):
            self._body_done = False
            self._reset_body_state()
        else:
            # The body's state is read only while _body_done is False: a
            # request without a body spares resetting it.
            self._body_done = True
        self.response_started = False
        self.response_done = False
        self._chunked = False
        self._send_body = True
        self._remaining: int | None = None
        self.keep_alive = head is not None and head.keep_alive

    def _reset_body_state(self) -> None:
        self._body_complete: trio.Event | None = None  # set when a body being read ends
        self._body_received = 0
        self._body_wait_left: float | None = None  # seconds the body may still keep us waiting
        self._body_rate_counted = 0  # body bytes already credited to _body_wait_left
        self._trailers_deadline: float | None = None  # the header timeout, from the trailers' start
        self._continue_sent = False

    # -- the loop ----------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the connection closes; never raises for I/O errors."""
        try:
            # One scope for the connection's life: an idle timeout or a
            # graceful stop cancels it while the connection waits between requests.
            with self._scope:
                await self._serve()
        except ConnectionLost:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self._close()
            self.lost = True

    async def _serve(self) -> None:
        just_sent = False  # a response went out just now, with no yield since
        max_requests = self.limits.max_requests_per_connection
        events = self.parser.events
        while not self.lost:
            head = await self._next_head(just_sent)
            if head is None:
                break
            if self.draining:
                self._scope.deadline = math.inf  # the first request came within FIRST_REQUEST_GRACE
            self._reset_exchange(head)
            self._requests_served += 1
            if self._requests_served >= max_requests:
                self.keep_alive = False
            rest = self.handler(self, head)
            if rest is not None:
                await rest
            if not self.response_done:
                # The handler gave up mid-response (or never answered): the
                # client must not mistake what it got for a whole response.
                break
            if self._body_done:
                # (no coroutine for the common case: nothing of the body is left)
                if events and events[0] is END_OF_MESSAGE:
                    events.popleft()
            elif not await self._finish_request_body():
                self.keep_alive = False
                self._linger = True
            if not self.keep_alive or self.draining:
                await self.flush()
                break
            just_sent = False
            if not events or type(events[0]) is not RequestHead or self._buffered() > READ_SIZE:
                just_sent = bool(self._out)
                if not self._send_without_waiting():
                    await self.flush()
            elif self._requests_served % 16 == 0:
                # Pipelined requests need no I/O wait: let other tasks run now and then.
                await trio.lowlevel.checkpoint()

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            if self._linger and not self.lost:
                await self._lingering_close()
            if self._out and not self.lost:
                try:
                    await self.transport.send_all(b"".join(self._out), 1)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                    pass
            try:
                await trio.aclose_forcefully(self.stream)
            except Exception:  # closing a broken stream can fail; nothing to do
                pass

    async def _lingering_close(self) -> None:
        """Half-close, then read and drop what the client is still sending.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the error response before the client reads it. So,
        after an error answer, we stop writing and drain (bounded in time and
        bytes) until the client closes too.
        """
        if self._out:
            try:
                await self.transport.send_all(b"".join(self._out), 1)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                return
            self._out.clear()
        await drain_input(self.transport, LINGER_SECONDS, MAX_DISCARD * 4)

    def _buffered(self) -> int:
        return sum(len(piece) for piece in self._out)

    async def _next_head(self, just_sent: bool = False) -> RequestHead | None:
        """The next request head, or None when the connection should close.

        ``just_sent``: a response was sent with no yield since, so the client
        has had no time to send its next request: we yield once before the
        read (see "Reading the answer to something just sent" in _transport).
        """
        events = self.parser.events
        if not events:
            if (self.draining and self._requests_served) or self.parser.closed:
                return None  # a first request is awaited while draining (see close_if_idle)
            # Waiting for a first byte. The server sweeps idle connections (see
            # expire_if_idle): a per-request timer here would cost more than
            # the rest of the wait.
            if just_sent:
                await trio.lowlevel.cancel_shielded_checkpoint()  # the server's stop is seen below
            data = self.transport.try_receive(READ_SIZE)
            if data is None:
                self.idle_since = trio.current_time()
                data = await self._receive(math.inf, wait_first=True)
                self.idle_since = None
            if not data or self._scope.cancel_called:
                return None  # the client left, or the server is stopping
            self.parser.feed(data)
            if not events:
                # A head in several pieces: from its first byte on, it has one deadline.
                deadline = trio.current_time() + self.limits.header_timeout
                try:
                    while not events:
                        if not await self._read_into_parser(time_left(deadline)):
                            return None
                except trio.TooSlowError:
                    await self._send_error(408)
                    return None
        event = events.popleft()
        if type(event) is RequestHead:
            return event
        if isinstance(event, ParseError):
            log.info("bad request from %s: %s", self.client, event.reason)
            await self._send_error(event.status)
            return None
        raise AssertionError(f"unexpected parser event {event!r}")  # the parser's own bug

    async def _receive(self, timeout: float, *, wait_first: bool = False) -> bytes:
        try:
            return await self.transport.receive(READ_SIZE, timeout, wait_first=wait_first)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _read_into_parser(self, timeout: float) -> bool:
        """Read once and feed the parser; False at end of input."""
        data = await self._receive(timeout)
        if not data:
            self.lost = True
            return False
        self.parser.feed(data)
        await self._yield_now_and_then(len(data))
        return True

    async def _yield_now_and_then(self, received: int) -> None:
        """Count a read; yield once enough were made without one (see Fairness).

        A read that had to wait went through the scheduler already, but telling
        which did would cost more than this count.
        """
        self._unyielded_bytes += received
        self._unyielded_reads += 1
        if self._unyielded_bytes >= YIELD_EVERY_BYTES or self._unyielded_reads >= YIELD_EVERY_READS:
            self._unyielded_bytes = self._unyielded_reads = 0
            await trio.lowlevel.checkpoint()

    async def _send_error(self, status: int) -> None:
        self._out.clear()
        self.keep_alive = False
        self._linger = True
        try:
            self._out.append(error_response(status, self.server_header, _date_header.value()))
            await self.flush()
        except (ConnectionLost, trio.TooSlowError):
            pass

    def close_if_idle(self) -> None:
        """For a graceful stop: close now if waiting between requests, unless
        the next request has already arrived (closing on it would reset the
        connection and drop it): that one is answered, then the connection
        closes. A connection still waiting for its first request gets
        ``FIRST_REQUEST_GRACE``."""
        self.draining = True
        if self.idle_since is None or _input_waiting(self.stream):
            return
        if self._requests_served:
            self._scope.cancel()
        else:
            self._scope.deadline = trio.current_time() + FIRST_REQUEST_GRACE  # lifted when the head comes

    def stop_after_first_request(self) -> None:
        """For a connection accepted while the server stops (what was queued
        already): answer its first request if it comes within
        ``FIRST_REQUEST_GRACE``, then close. Closing it at once would reset
        it, its request unread."""
        self.draining = True
        self._scope.deadline = trio.current_time() + FIRST_REQUEST_GRACE  # lifted when the head comes

    def close_now_if_idle(self) -> None:
        """Close the connection if it is waiting for a request (to make room for another)."""
        if self.idle_since is not None:
            self.idle_since = None
            self._scope.cancel()

    def expire_if_idle(self, now: float) -> None:
        """Close the connection if it has waited too long for a request.

        Called by the server about once a second for every connection; the
        first request of a connection gets the header timeout, later ones the
        keep-alive timeout.
        """
        since = self.idle_since
        if since is not None:
            limit = self.limits.keepalive_timeout if self._requests_served else self.limits.header_timeout
            if now - since >= limit:
                self._scope.cancel()

    # -- request body --------------------------------------------------------

    def declared_body_size(self) -> int | None:
        """The Content-Length of the current request, None when chunked."""
        assert self.head is not None
        return None if self.head.chunked else (self.head.content_length or 0)

    async def receive_body_chunk(self, max_size: int) -> bytes:
        """The next piece of the request body; ``b""`` once it is complete.

        Raises ``BodyTooLarge`` when the body would exceed ``max_size`` (before
        anything is read when Content-Length says so, in which case no
        ``100 Continue`` is sent), ``BodyTimeout`` when the client stays silent
        for the body timeout or keeps us waiting for longer than the body's
        rate allows (the body timeout, plus one second for each
        ``min_body_rate`` bytes received: Apache's ``MinRate``; only time
        spent waiting for the client counts, not a slow reader's own pace;
        trailers get the header timeout from their start),
        ``ParseError`` when the body's framing is broken (answer its status;
        the connection will close), ``ConnectionLost``
        when the client goes away.
        """
        head = self.head
        assert head is not None
        if self._body_done:
            return b""
        if head.content_length is not None and head.content_length > max_size:
            self.keep_alive = False  # the unread body is in the way of any next request
            raise BodyTooLarge
        if head.expect_continue and not self._continue_sent:
            self._continue_sent = True
            # Queued, not sent past the queue: the responses to requests
            # pipelined before this one may wait there, and go first.
            self._out.append(CONTINUE_100)
            await self.flush()
        events = self.parser.events
        while True:
            if events:
                event = events[0]
                if isinstance(event, bytes):
                    events.popleft()
                    self._body_received += len(event)
                    if self._body_received > max_size:
                        self.keep_alive = False
                        raise BodyTooLarge
                    return event
                if event is END_OF_MESSAGE:
                    events.popleft()
                    self._body_done = True
                    if self._body_complete is not None:
                        self._body_complete.set()
                    return b""
                if isinstance(event, ParseError):
                    self.keep_alive = False
                    raise event
            got = await self._read_body_bytes()
            if not got:
                raise ConnectionLost("client closed the connection during the request body")

    async def _read_body_bytes(self) -> bool:
        """One read for the body, within the body's time allowance; False at end of input."""
        limits = self.limits
        left = self._body_wait_left
        if left is None:
            left = limits.body_timeout
        if limits.min_body_rate:
            left += (self._body_received - self._body_rate_counted) / limits.min_body_rate
        self._body_rate_counted = self._body_received
        started = trio.current_time()
        timeout = min(limits.body_timeout, max(left, 0.0))
        if self.parser.maybe_in_trailers:
            # Trailers are a header block: they get the header timeout, however
            # much time the body's rate had earned.
            if self._trailers_deadline is None:
                self._trailers_deadline = started + limits.header_timeout
            timeout = min(timeout, time_left(self._trailers_deadline))
        else:
            self._trailers_deadline = None
        try:
            got = await self._read_into_parser(timeout)
        except trio.TooSlowError:
            self.keep_alive = False
            raise BodyTimeout from None
        if limits.min_body_rate:
            self._body_wait_left = left - (trio.current_time() - started)
        return got

    async def _finish_request_body(self) -> bool:
        """Skip what the handler left of the body (some is left: ``_serve`` handles
        a finished one itself); False if we would rather close."""
        head = self.head
        assert head is not None
        if head.expect_continue and not self._continue_sent:
            return False  # the client has not sent it, and need not
        remaining = MAX_DISCARD
        try:
            while not self._body_done:
                piece = await self.receive_body_chunk(remaining)
                remaining -= len(piece)
        except (BodyTooLarge, BodyTimeout, ParseError):
            return False
        return True

    # -- response ------------------------------------------------------------

    def start_response(
        self,
        code: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
        content_length: int | None,
    ) -> None:
        """Frame the response head into the output buffer.

        ``headers`` must not contain framing or connection headers (they are
        decided here). ``content_length`` None means the length is unknown:
        chunked on HTTP/1.1, close-delimited on HTTP/1.0.
        """
        head = self.head
        assert head is not None and not self.response_started
        self.response_started = True
        if self.draining or self.lost:
            self.keep_alive = False
        pairs = headers
        no_body = status_has_no_body(code)
        self._send_body = not no_body and head.method != b"HEAD"
        if no_body:
            self._remaining = 0
        elif content_length is not None:
            pairs.append((b"Content-Length", length_text(content_length)))
            self._remaining = content_length
        elif head.method == b"HEAD":
            self._remaining = 0
        elif head.version == b"1.1":
            pairs.append((b"Transfer-Encoding", b"chunked"))
            self._chunked = True
        else:
            self.keep_alive = False  # the end of the body is the end of the connection
        if not self._body_done:
            if not self._continue_sent and head.expect_continue:
                self.keep_alive = False  # the body was refused before it was sent
            elif head.content_length is not None and head.content_length - self._body_received > MAX_DISCARD:
                self.keep_alive = False  # answered before its body, too large to skip
        if not self.keep_alive:
            pairs.append((b"Connection", b"close"))
        elif head.version == b"1.0":
            pairs.append((b"Connection", b"keep-alive"))
        # (a Server or Date set by the resource, or --add-header, replaces ours)
        self._out.append(serialize_head(b"1.1", code, phrase, pairs, _date_header, self.server_header))

    def write(self, data: bytes) -> None:
        """Queue a piece of the body (no I/O; see ``flush``)."""
        if not data or not self._send_body:
            return
        if self._remaining is not None:
            if len(data) > self._remaining:
                raise ValueError("response body longer than its Content-Length")
            self._remaining -= len(data)
        self._out.append(chunk(data) if self._chunked else data)

    def end_response(self) -> None:
        """Mark the response complete; a short body vs. Content-Length closes the connection."""
        if self._chunked:
            self._out.append(LAST_CHUNK)
        elif self._remaining and self._send_body:
            # Fewer bytes than announced: the client would wait for the rest.
            self.keep_alive = False
            self.lost = True
        self.response_done = True

    def has_output(self) -> bool:
        return bool(self._out)

    def _take_output(self) -> bytes | list[bytes]:
        """What is queued, in the form it is sent in, and the queue emptied:
        one piece, several joined, or (large) the list of them for a
        gathered write, so that the kernel rather than a join copies them."""
        out = self._out
        if len(out) == 1:
            data = out[0]
            out.clear()
            return data
        if len(out) <= MAX_GATHERED and sum(map(len, out)) > JOIN_UP_TO:
            self._out = []
            return out
        data = b"".join(out)
        out.clear()
        return data

    def _send_without_waiting(self) -> bool:
        """Send a small response the way ``flush`` would, without a coroutine:
        True if all of it went (the usual case); otherwise what is left stays
        queued for ``flush``. ConnectionLost if the client is gone."""
        if not self._out or self.lost:
            return not self._out
        data = self._take_output()
        if isinstance(data, list):
            self._out = data  # large: flush gathers the pieces
            return False
        if len(data) > JOIN_UP_TO:
            self._out = [data]  # large: flush sends it without copying what a partial write leaves
            return False
        try:
            sent = self.transport.try_send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.lost = True
            raise ConnectionLost("client went away") from exc
        if sent < len(data):
            self._out.append(data[sent:])
            return False
        return True

    async def flush(self) -> None:
        """Send everything queued; ConnectionLost if the client is gone or stalled."""
        if not self._out:
            return
        data = self._take_output()
        if self.lost:
            raise ConnectionLost("client went away")
        try:
            if isinstance(data, list):
                await self.transport.send_pieces(data, self.limits.send_timeout)
            else:
                await self.transport.send_all(data, self.limits.send_timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.lost = True
            raise ConnectionLost("client went away") from exc
        except trio.TooSlowError as exc:
            self.lost = True
            raise ConnectionLost("client stopped reading (send timeout)") from exc

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of the open file ``fd`` from ``offset`` as body.

        Uses ``os.sendfile`` when the stream is a plain socket and the body is
        not chunked; otherwise reads in a worker thread. Bounded memory either
        way; the send timeout applies to each stall.
        """
        if not self._send_body or count <= 0:
            if self._remaining is not None:
                self._remaining -= min(max(count, 0), self._remaining)
            return
        if self._remaining is not None:
            if count > self._remaining:
                raise ValueError("response body longer than its Content-Length")
            self._remaining -= count
        await self.flush()
        sock = self.transport.socket
        if sock is None or self._chunked:
            await self._send_file_by_reading(fd, offset, count)
            return
        out = sock.fileno()
        position = offset

        def send_from_file(size: int) -> int:
            nonlocal position
            sent = os.sendfile(out, fd, position, size)
            position += sent
            return sent

        await self._send_by_kernel(send_from_file, count, "file")

    async def send_pipe(self, fd: int, count: int, on_sent: Callable[[int], None]) -> None:
        """Send the next ``count`` bytes of the pipe ``fd`` as body.

        The bytes must be in the pipe already (``fd`` non-blocking). Uses
        ``os.splice`` to a plain socket when the body is not chunked (no copy
        through user space); otherwise reads them and sends them as bytes.
        ``on_sent`` is called with each amount taken from the pipe; the send
        timeout applies to each stall.
        """
        if count <= 0:
            return
        if self._remaining is not None and self._send_body:
            if count > self._remaining:
                raise ValueError("response body longer than its Content-Length")
        sock = self.transport.socket
        if sock is None or self._chunked or not self._send_body or not hasattr(os, "splice"):
            for piece in read_pipe(fd, count, on_sent, READ_SIZE * 4):
                if self._send_body:
                    self.write(piece)
                    await self.flush()
            return
        if self.lost:
            raise ConnectionLost("client went away")
        if self._remaining is not None:
            self._remaining -= count
        await self.flush()
        out = sock.fileno()
        await self._send_by_kernel(lambda size: os.splice(fd, out, size, flags=SPLICE_FLAGS),
                                   count, "pipe", on_sent)

    async def _send_by_kernel(self, move: Callable[[int], int], count: int, source: str,
                              on_sent: Callable[[int], None] | None = None) -> None:
        """Send ``count`` body bytes that the kernel moves to the client's socket
        itself: ``move(n)`` (``os.sendfile``, ``os.splice``) moves up to ``n``
        of them and says how many, or raises ``BlockingIOError`` when the
        socket is full. The send timeout applies to each stall; a failure
        marks the connection lost. ``on_sent`` is told each amount moved.
        """
        while count > 0:
            try:
                sent = move(count)
            except BlockingIOError:
                try:
                    await self.transport.wait_writable(self.limits.send_timeout)
                except trio.TooSlowError:
                    self.lost = True
                    raise ConnectionLost("client stopped reading (send timeout)") from None
                continue
            except OSError as exc:
                self.lost = True
                raise ConnectionLost(f"sending from the {source} failed: {exc}") from exc
            if sent == 0:
                raise ValueError(f"{source} shorter than the body being sent")
            count -= sent
            if on_sent is not None:
                on_sent(sent)
            await trio.lowlevel.checkpoint()  # a large body must not keep other connections waiting

    async def _send_file_by_reading(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            piece = await trio.to_thread.run_sync(os.pread, fd, min(count, READ_SIZE * 4), offset)
            if not piece:
                raise ValueError("file shorter than the range being sent")
            offset += len(piece)
            count -= len(piece)
            self._out.append(chunk(piece) if self._chunked else piece)
            await self.flush()

    async def watch_for_disconnect(self) -> None:
        """Return when the client closes or resets the connection.

        Meant to run beside a handler whose response takes time; it reads
        ahead (bounded) so pipelined requests are parsed meanwhile.
        """
        if not self._body_done:
            # The body is someone else's to read (a resource streaming it):
            # reading here too would race with it. Watch once it is complete.
            if self._body_complete is None:
                self._body_complete = trio.Event()
            await self._body_complete.wait()
        # take_over_stream cancels this scope: the stream is then the taker's to read.
        self._watching = trio.CancelScope()
        try:
            with self._watching:
                read_ahead = 0
                while read_ahead < MAX_READ_AHEAD and not self.taken_over:
                    try:
                        data = await self._receive(math.inf)
                    except trio.BusyResourceError:
                        break  # someone else reads; they will notice
                    if not data:
                        self.lost = True
                        return
                    read_ahead += len(data)
                    self.parser.feed(data)
                    await self._yield_now_and_then(len(data))
        finally:
            self._watching = None
        await trio.sleep_forever()

    def cancel_task(self) -> None:
        """Cancel the task serving the connection wherever it waits, and end
        the connection: how a response whose render has no cancel scope of its
        own is stopped when its client goes away (``Request.run_until_it_waits``)."""
        self.lost = True
        self._scope.cancel()

    # -- raw-stream takeover (CONNECT tunnels) --------------------------------

    async def take_over_stream(self, code: int, phrase: bytes,
                               headers: list[tuple[bytes, bytes]]) -> tuple[Transport, bytes]:
        """Answer CONNECT with a 2xx head and hand the connection over as raw bytes.

        The head gets our Date and Server and no framing (RFC 9110 §9.3.6:
        a 2xx answer to CONNECT has no body). Returns the connection's
        transport and the bytes the client sent after its request head
        already (read with it, or by the disconnect watcher, which stops
        reading here). From then on the connection does no HTTP: the
        handler owns the bytes both ways until it returns, then the
        connection closes the stream (the taker never closes it itself).
        ``ConnectionLost`` if the client is gone.
        """
        head = self.head
        assert head is not None and head.method == b"CONNECT" and 200 <= code < 300
        assert not self.response_started and self._body_done
        self.taken_over = True
        while self._watching is not None:
            # Stop the watcher and let it leave the stream (a TLS stream is
            # locked while one task reads it).
            self._watching.cancel()
            await trio.lowlevel.checkpoint()
        if self.lost:
            raise ConnectionLost("client went away")
        self.response_started = self.response_done = True
        self.keep_alive = False
        self._send_body = False
        self._out.append(serialize_head(b"1.1", code, phrase, headers, _date_header, self.server_header))
        await self.flush()
        past_head = self.parser.past_upgrade
        self.parser.past_upgrade = None
        return self.transport, bytes(past_head or b"")


async def drain_input(transport: Transport, seconds: float, max_bytes: int) -> None:
    """Half-close ``transport``'s socket and read and drop what the peer still
    sends, for at most ``seconds`` and ``max_bytes``, or until it closes too (see
    ``HTTPConnection._lingering_close``). Yields to other tasks after each read."""
    sock = transport.socket
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = trio.current_time() + seconds
    drained = 0
    try:
        while drained < max_bytes:
            data = await transport.receive(READ_SIZE, time_left(deadline))
            if not data:
                return
            drained += len(data)
            await trio.lowlevel.checkpoint()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
