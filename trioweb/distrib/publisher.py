"""The personal server's side: ``ResourcePublisher`` and ``serve_publisher``.

``ResourcePublisher(site)`` is what a personal server publishes, with
``serve_publisher``: on each connection from a front, the rpc root offers one
method, ``request(message, body)``, which takes a forwarded request and runs
it through ``site`` exactly as a local request: same traversal, same render
dispatch (405, HEAD, ``setLastModified``, ``NOT_DONE_YET``, ``async def``),
same error pages. Only the channel differs: a ``RemoteChannel`` reads the
body from an rpc stream and sends the response back over the connection.

How a response goes back:

- complete before its first flush: in the call's answer, one message (no
  round trip per write): the body itself if small, else a ``StreamSender``
  given the whole body, which follows the answer at once as far as the
  front's window allows;
- a body that is one range of a file (``File`` sends it with ``sendfile``),
  if the front accepts open files: the file itself, passed open with the
  answer, for the front to send (``_passed_file``);
- otherwise: at the first flush, a one-way ``response`` message to the
  front's root on that connection carries the request's token, the head and
  a ``StreamSender``; the body follows on that stream with the consumer's
  flow control, and the call returns (None) when the body is complete.

Cancellation: when the front cancels the call (its client left) or the
connection drops, the call's task is cancelled, and with it the request's
rendering and its nursery.

Serving (``PublisherServer``, or ``serve_publisher`` until cancelled): on a
UNIX socket, only the allowed peer uids, at most ``max_per_peer`` (16)
connections per uid (every PHP or CGI process of a host runs as www-data;
a front needs one), each closed after ``idle_timeout`` (300 s) with nothing
in flight. On a TLS listener (``ssl:...:caCerts=FILE``: a personal server
on another machine), the handshake, which checks the front's client
certificate, must end within ``HANDSHAKE_TIMEOUT`` (10 s); a front that
fails it is dropped with a warning (rate-limited per address) before any
rpc is spoken; at most ``max_per_peer`` connections per IP address, their
handshakes included. ``stop()`` drains: the listeners close, each connection is closed
(with a goodbye, so the front knows it ended cleanly and connects again next
time) as soon as nothing is in flight on it, and whatever is still busy after
``drain_timeout`` is cancelled.
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import os
from collections.abc import Callable, Coroutine
from typing import Any

import trio

import rpc
from trioweb.distrib._messages import ForwardedRequest, ForwardedResponse, enlarge_socket_buffers
from trioweb.distrib._passed_file import PASS_FROM, unsendable
from trioweb.http import (
    BodyTooLarge,
    ConnectionLost,
    RateLimitedLog,
    RequestHead,
    accept_forever,
    read_pipe,
    status_has_no_body,
)
from trioweb.server import Site

__all__ = ["FrontConnection", "PublisherServer", "RemoteChannel", "ResourcePublisher", "serve_publisher"]

log = logging.getLogger("trioweb.distrib")
refused_log = RateLimitedLog(log)  # per peer uid: refusals (and rpc's lines) are caused by the peer
rpc_log = logging.getLogger("rpc")

# Connections one peer uid may have open at once: a front needs one (one per
# front process); every CGI or PHP process of a host runs as www-data.
MAX_PER_PEER = 16
IDLE_TIMEOUT = 300.0  # seconds without a call in flight before a connection is closed
DRAIN_TIMEOUT = 30.0
DRAIN_POLL = 0.05  # how often a draining server looks for connections gone idle
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS front has to complete its handshake

# The body of a complete response up to this size goes in the call's answer
# itself; a larger one on a stream the answer carries.
INLINE_BODY = 256 * 1024
READ_SIZE = 64 * 1024


class RemoteChannel:
    """The ``Channel`` of a request forwarded by a front server."""

    def __init__(self, head: RequestHead, forwarded: ForwardedRequest, body: rpc.StreamReceiver | None,
                 front: FrontConnection) -> None:
        self.head = head
        self.client = forwarded.client
        self.host = forwarded.host
        self.is_secure = forwarded.secure
        self._token = forwarded.token
        self._body = body
        self._body_done = body is None or not head.has_body
        self._received = 0
        self._front = front
        self.lost = False
        self.response_started = False
        self.response_done = False
        self._status: ForwardedResponse | None = None  # the head, once framed
        self._send_body = True
        self._out: list[bytes] = []
        self._out_size = 0
        self._sender: rpc.StreamSender | None = None
        self._sender_closed = False
        self._file: tuple[rpc.FileDescriptor, int, int] | None = None  # the body, passed open

    # -- request body ---------------------------------------------------------

    def declared_body_size(self) -> int | None:
        return self.head.content_length

    async def receive_body_chunk(self, max_size: int) -> bytes:
        if self._body_done:
            return b""
        declared = self.head.content_length
        if declared is not None and declared > max_size:
            raise BodyTooLarge
        assert self._body is not None
        try:
            piece = await self._body.receive_some(READ_SIZE)
        except (rpc.StreamError, rpc.ConnectionLost) as exc:
            self.lost = True
            raise ConnectionLost(f"the front stopped sending the body: {exc}") from exc
        if not piece:
            self._body_done = True
            return b""
        self._received += len(piece)
        if self._received > max_size:
            raise BodyTooLarge
        return piece

    # -- response ---------------------------------------------------------------

    def start_response(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]],
                       content_length: int | None) -> None:
        self.response_started = True
        no_body = status_has_no_body(code)
        self._send_body = not no_body and self.head.method != b"HEAD"
        self._status = ForwardedResponse(code, phrase, tuple(headers), None if no_body else content_length)

    def write(self, data: bytes) -> None:
        if self._send_body and data:
            self._out.append(data)
            self._out_size += len(data)

    def end_response(self) -> None:
        self.response_done = True

    def _held_for_answer(self) -> bool:
        """The whole response is here and nothing of it was sent: the call's answer carries it."""
        return self._sender is None and self.response_done

    def has_output(self) -> bool:
        if self._held_for_answer():
            return False
        # Also true when the end of a streamed body is still to be sent.
        return bool(self._out) or (self.response_done and self._sender is not None and not self._sender_closed)

    async def flush(self) -> None:
        if self.lost:
            raise ConnectionLost("the front went away")
        if self._sender is None:
            if self._held_for_answer():
                return
            await self._start_stream()
        assert self._sender is not None
        data = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        try:
            if data:
                await self._sender.send_all(data)
            if self.response_done and not self._sender_closed:
                self._sender_closed = True
                await self._sender.aclose()
        except (rpc.StreamError, rpc.ConnectionLost, trio.ClosedResourceError) as exc:
            self.lost = True
            raise ConnectionLost(f"the front stopped reading: {exc}") from exc

    async def _start_stream(self) -> None:
        assert self._status is not None
        self._sender = rpc.StreamSender()
        try:
            responses = await self._front.responses()
            await responses.sendRemote("response", self._token, self._status.to_wire(), self._sender)
        except rpc.RPCError as exc:
            self.lost = True
            raise ConnectionLost(f"cannot reach the front: {exc}") from exc

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        if self._may_pass_file(fd, offset, count):
            self._file = (rpc.FileDescriptor(os.dup(fd)), offset, count)
            return
        while count > 0 and not self.lost:
            piece = await trio.to_thread.run_sync(os.pread, fd, min(count, READ_SIZE * 4), offset)
            if not piece:
                raise ValueError("file shorter than the range being sent")
            offset += len(piece)
            count -= len(piece)
            self.write(piece)
            await self.flush()

    def _may_pass_file(self, fd: int, offset: int, count: int) -> bool:
        """Whether the body is this range of the file, and the front takes it open."""
        status = self._status
        if (status is None or status.length != count or count < PASS_FROM or not self._send_body
                or self._out or self._sender is not None or self._file is not None):
            return False
        broker = self._front.broker
        peer = broker.peer_limits if broker is not None else None
        return peer is not None and peer.max_fds > 0 and unsendable(fd, offset, count) is None

    async def send_pipe(self, fd: int, count: int, on_sent: Callable[[int], None]) -> None:
        for piece in read_pipe(fd, count, on_sent, READ_SIZE * 4):
            self.write(piece)
            await self.flush()  # ConnectionLost once the front is gone

    async def watch_for_disconnect(self) -> None:
        # The front cancels the call when its client goes away, which cancels
        # this request's rendering; there is nothing to watch here.
        await trio.sleep(math.inf)

    def answer_at_once(self) -> dict[str, Any] | None:
        """The call's answer if the whole response is here, held for it, and
        no body is left unread; else None."""
        if not (self._held_for_answer() and self._status is not None and self._body_done):
            return None
        body = b"".join(self._out)
        answer = self._status.to_wire()  # the head; the body goes with it
        if self._file is not None:
            if body:  # the file was announced as the whole body (its Content-Length)
                raise ValueError("response body longer than its Content-Length")
            answer["file"] = self._file
        elif len(body) <= INLINE_BODY:
            answer["body"] = body
        else:
            answer["stream"] = rpc.StreamSender(body)
        return answer

    async def complete(self) -> dict[str, Any] | None:
        """After the Site is done: the answer of the call (None if the body was streamed)."""
        if not self._body_done:
            assert self._body is not None
            await self._body.aclose()  # what the resource did not read, the front need not send
            self._body_done = True
        answer = self.answer_at_once()
        if answer is not None:
            return answer
        if (self._sender is not None or self.response_done) and not self.lost:  # streamed
            await self.flush()
            return None
        raise ConnectionLost("the response was not completed")


class ResourcePublisher:
    """What a personal server publishes; see the module docstring."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def request(self, message: Any, body: Any, front: FrontConnection) -> Any:
        """Run a request that ``front`` forwarded; the call's answer (see the module docstring).

        A malformed message raises ``MessageError``, a body that is not a
        stream ``TypeError``: the front answers its client with a generic
        error. A plain method: a response complete at once is answered from
        the rpc connection's reader, without a task; otherwise the coroutine
        returned finishes the request in the call's own task.
        """
        forwarded = ForwardedRequest.from_wire(message)
        head = forwarded.head()
        if body is not None and not isinstance(body, rpc.StreamReceiver):
            raise TypeError("the body must be a stream")
        channel = RemoteChannel(head, forwarded, body, front)
        request = self.site.requestFactory(self.site, channel, head)
        request.prepath = forwarded.prepath
        request.postpath = forwarded.postpath
        rest = self.site.start_processing(request)
        if rest is None:
            answer = channel.answer_at_once()
            if answer is not None:
                return answer
        return self._finish(channel, rest)

    @staticmethod
    async def _finish(channel: RemoteChannel, rest: Coroutine[Any, Any, None] | None) -> dict[str, Any] | None:
        if rest is not None:
            await rest
        return await channel.complete()


class FrontConnection(rpc.Referenceable):
    """The rpc root offered on one connection from a front: its ``request``
    goes to the publisher; the way back to that front for streamed responses
    (the front's root) is fetched the first time a request streams, and kept.

    It counts the calls in flight on its connection, and since when it has
    had none, so that the server can close it when idle or draining.

    The old form of the call, ``request(message, body, sink)``, fails with a
    ``TypeError``, which the front turns into a generic error page.
    """

    def __init__(self, publisher: ResourcePublisher) -> None:
        self.publisher = publisher
        self.broker: rpc.Broker | None = None  # set once made: the broker is made with this root
        self._responses: rpc.RemoteReference | None = None
        self.in_flight = 0  # calls whose answer is not sent yet
        self.idle_since = trio.current_time()
        self.scope = trio.CancelScope()  # cancelled to close the connection (a goodbye is sent)

    def remote_request(self, message: Any, body: Any) -> Any:
        result = self.publisher.request(message, body, self)
        if inspect.iscoroutine(result):
            self.in_flight += 1
            return self._counted(result)
        self.idle_since = trio.current_time()
        return result

    async def _counted(self, call: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await call
        finally:
            self.in_flight -= 1
            self.idle_since = trio.current_time()

    def idle(self) -> bool:
        """No call in flight and no stream still flowing (a large body sent after its answer)."""
        return self.in_flight == 0 and (self.broker is None or self.broker.open_streams == 0)

    async def responses(self) -> rpc.RemoteReference:
        """The front's root on this connection; ``RPCError`` if the connection is
        closed or the front offers none."""
        if self._responses is None:
            assert self.broker is not None
            self._responses = await self.broker.getRootObject()
        return self._responses


class PublisherServer:
    """Serves a publisher to fronts on listeners until ``stop()``; see ``serve_publisher``."""

    def __init__(
        self,
        publisher: ResourcePublisher,
        listeners: list[trio.abc.Listener[Any]],
        *,
        allowed_uids: frozenset[int] | None = None,
        limits: rpc.Limits | None = None,
        max_per_peer: int = MAX_PER_PEER,
        idle_timeout: float = IDLE_TIMEOUT,
        drain_timeout: float = DRAIN_TIMEOUT,
        idle_exit: float | None = None,
    ) -> None:
        if max_per_peer < 1 or idle_timeout <= 0 or drain_timeout < 0 or (idle_exit is not None and idle_exit <= 0):
            raise ValueError("max_per_peer must be at least 1, idle_timeout and idle_exit positive, drain_timeout "
                             "not negative")
        self.publisher = publisher
        self.listeners = listeners
        self.allowed_uids = allowed_uids
        self.limits = limits
        self.max_per_peer = max_per_peer
        self.idle_timeout = idle_timeout
        self.drain_timeout = drain_timeout
        # Stop (gracefully) after this long with no call in flight: a socket-activated
        # server gives its memory back, and systemd starts it again on the next connection.
        self.idle_exit = idle_exit
        self.stopped_idle = False
        self._last_accepted = trio.current_time()
        self.connections: set[FrontConnection] = set()
        self.per_uid: collections.Counter[int] = collections.Counter()
        self.per_address: collections.Counter[str] = collections.Counter()  # TLS connections, by IP address
        self._stopping = trio.Event()
        self._accept_scope = trio.CancelScope()

    def stop(self) -> None:
        """Begin a graceful stop: accept no more, let calls in flight finish, then return."""
        self._stopping.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as connections:

            def dispatch(stream: trio.abc.Stream) -> None:
                connections.start_soon(self._serve_one, stream)

            with self._accept_scope:
                async with trio.open_nursery() as acceptors:
                    for listener in self.listeners:
                        acceptors.start_soon(accept_forever, listener, dispatch)
                    acceptors.start_soon(self._close_idle_connections)
                    if self.idle_exit is not None:
                        acceptors.start_soon(self._stop_when_idle, self.idle_exit)
                    task_status.started()
                    await self._stopping.wait()
                    acceptors.cancel_scope.cancel()
            for listener in self.listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()
            # Draining: each connection closes (with a goodbye) once it has nothing in flight.
            with trio.move_on_after(self.drain_timeout):
                while self.connections:
                    for front in list(self.connections):
                        if front.idle():
                            front.scope.cancel()
                    await trio.sleep(DRAIN_POLL)
            if self.connections:
                log.warning("%d connections still busy after the drain timeout (%g s): closing them",
                            len(self.connections), self.drain_timeout)
            connections.cancel_scope.cancel()

    async def _close_idle_connections(self) -> None:
        tick = min(1.0, self.idle_timeout / 4)
        while True:
            await trio.sleep(tick)
            expired = trio.current_time() - self.idle_timeout
            for front in list(self.connections):
                if front.idle_since < expired and front.idle():
                    log.debug("closing a connection idle for over %g s", self.idle_timeout)
                    front.scope.cancel()

    def idle_for(self) -> float:
        """Seconds since the last call ended or the last connection came; 0 while a call is in flight."""
        if not all(front.idle() for front in self.connections):
            return 0.0
        last = max([self._last_accepted, *(front.idle_since for front in self.connections)])
        return trio.current_time() - last

    async def _stop_when_idle(self, idle_exit: float) -> None:
        while True:
            await trio.sleep(min(1.0, idle_exit / 4))
            if self.idle_for() >= idle_exit:
                log.info("no request for %g s: stopping (--idle-exit)", idle_exit)
                self.stopped_idle = True
                self.stop()
                return

    async def _serve_one(self, stream: trio.abc.Stream) -> None:
        self._last_accepted = trio.current_time()
        if not isinstance(stream, trio.SSLStream):
            await self._serve_front(stream)
            return
        # Counted from accept, handshake included: stalled handshakes hold a bounded share.
        address = _peer_address(stream)
        if self.per_address[address] >= self.max_per_peer:
            refused_log.warning(("address", address), "refused a TLS connection from %s: it has %d open already "
                                "(the most one peer may have)", address, self.per_address[address])
            await trio.aclose_forcefully(stream)
            return
        self.per_address[address] += 1
        try:
            if await self._handshake(stream, address):
                await self._serve_front(stream)
        finally:
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]

    async def _handshake(self, stream: trio.SSLStream[Any], address: str) -> bool:
        """Complete a TLS front's handshake (its certificate checked); False, logged, if it fails."""
        reason = None
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            try:
                await stream.do_handshake()
                return True
            except trio.BrokenResourceError as exc:
                reason = str(exc.__cause__ or exc)
        refused_log.warning(("address", address), "refused a TLS connection from %s: %s", address,
                            reason or f"no handshake within {HANDSHAKE_TIMEOUT:g} s")
        await trio.aclose_forcefully(stream)
        return False

    async def _serve_front(self, stream: trio.abc.Stream) -> None:
        enlarge_socket_buffers(stream)
        credentials = rpc.peer_credentials_of(stream)
        uid = None if credentials is None else credentials.uid
        if credentials is not None and self.allowed_uids is not None and credentials.uid not in self.allowed_uids:
            refused_log.warning(("uid", credentials.uid), "refused a connection from uid %d (pid %d): not an "
                                "allowed peer", credentials.uid, credentials.pid)
            await trio.aclose_forcefully(stream)
            return
        if credentials is not None and self.per_uid[credentials.uid] >= self.max_per_peer:
            refused_log.warning(("uid", credentials.uid), "refused a connection from uid %d (pid %d): it has %d "
                                "open already (the most one peer may have)", credentials.uid, credentials.pid,
                                self.per_uid[credentials.uid])
            await trio.aclose_forcefully(stream)
            return
        front = FrontConnection(self.publisher)
        # What the connection logs (a peer breaking the protocol) is rate-limited per peer uid.
        broker = front.broker = rpc.Broker(stream, front, limits=self.limits,
                                           logger=refused_log.adapter(("uid", uid), rpc_log))
        if uid is not None:
            self.per_uid[uid] += 1
        self.connections.add(front)
        try:
            with front.scope:
                async with broker:
                    await broker.wait_closed()
        except (rpc.RPCError, trio.BrokenResourceError, OSError) as exc:
            log.info("connection from the front ended: %s", exc)
        finally:
            self.connections.discard(front)
            if uid is not None:
                self.per_uid[uid] -= 1
                if not self.per_uid[uid]:
                    del self.per_uid[uid]


def _peer_address(stream: trio.SSLStream[Any]) -> str:
    sock = getattr(stream.transport_stream, "socket", None)
    try:
        return "?" if sock is None else str(sock.getpeername()[0])
    except OSError:
        return "?"  # gone already


async def serve_publisher(
    publisher: ResourcePublisher,
    listeners: list[trio.abc.Listener[Any]],
    *,
    allowed_uids: frozenset[int] | None = None,
    limits: rpc.Limits | None = None,
    max_per_peer: int = MAX_PER_PEER,
    idle_timeout: float = IDLE_TIMEOUT,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``publisher`` on ``listeners`` until cancelled.

    On UNIX sockets, a peer whose uid is not in ``allowed_uids`` is dropped
    before a byte is read or written (None allows everyone: TCP, or a
    deliberate choice), and so is a connection beyond the ``max_per_peer``
    that one uid may have open. A connection with nothing in flight for
    ``idle_timeout`` seconds is closed (the front connects again when it
    needs to). Each connection's failure stays with it. For a graceful stop
    (stop accepting, let calls in flight finish, then return), use
    ``PublisherServer`` and its ``stop()``.
    """
    server = PublisherServer(publisher, listeners, allowed_uids=allowed_uids, limits=limits,
                             max_per_peer=max_per_peer, idle_timeout=idle_timeout)
    await server.serve(task_status=task_status)
