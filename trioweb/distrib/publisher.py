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
- otherwise: at the first flush, a one-way ``response`` message to the
  front's root on that connection carries the request's token, the head and
  a ``StreamSender``; the body follows on that stream with the consumer's
  flow control, and the call returns (None) when the body is complete.

Cancellation: when the front cancels the call (its client left) or the
connection drops, the call's task is cancelled, and with it the request's
rendering and its nursery.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Coroutine
from typing import Any

import trio

import rpc
from trioweb.distrib._messages import ForwardedRequest, ForwardedResponse, enlarge_socket_buffers
from trioweb.http import BodyTooLarge, ConnectionLost, RequestHead, accept_forever, read_pipe, status_has_no_body
from trioweb.server import Site

__all__ = ["FrontConnection", "RemoteChannel", "ResourcePublisher", "serve_publisher"]

log = logging.getLogger("trioweb.distrib")

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
        while count > 0 and not self.lost:
            piece = await trio.to_thread.run_sync(os.pread, fd, min(count, READ_SIZE * 4), offset)
            if not piece:
                raise ValueError("file shorter than the range being sent")
            offset += len(piece)
            count -= len(piece)
            self.write(piece)
            await self.flush()

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
        if len(body) <= INLINE_BODY:
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

    The old form of the call, ``request(message, body, sink)``, fails with a
    ``TypeError``, which the front turns into a generic error page.
    """

    def __init__(self, publisher: ResourcePublisher) -> None:
        self.publisher = publisher
        self.broker: rpc.Broker | None = None  # set once made: the broker is made with this root
        self._responses: rpc.RemoteReference | None = None

    def remote_request(self, message: Any, body: Any) -> Any:
        return self.publisher.request(message, body, self)

    async def responses(self) -> rpc.RemoteReference:
        """The front's root on this connection; ``RPCError`` if the connection is
        closed or the front offers none."""
        if self._responses is None:
            assert self.broker is not None
            self._responses = await self.broker.getRootObject()
        return self._responses


async def serve_publisher(
    publisher: ResourcePublisher,
    listeners: list[trio.abc.Listener[Any]],
    *,
    allowed_uids: frozenset[int] | None = None,
    limits: rpc.Limits | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``publisher`` on ``listeners`` until cancelled.

    On UNIX sockets, a peer whose uid is not in ``allowed_uids`` is dropped
    before a byte is read or written (None allows everyone: TCP, or a
    deliberate choice). Each connection's failure stays with it.
    """

    async def serve_one(stream: trio.abc.Stream) -> None:
        enlarge_socket_buffers(stream)
        front = FrontConnection(publisher)
        broker = front.broker = rpc.Broker(stream, front, limits=limits)
        credentials = broker.peer_credentials()
        if allowed_uids is not None and credentials is not None and credentials.uid not in allowed_uids:
            log.warning("refused a connection from uid %d (pid %d): not an allowed peer",
                        credentials.uid, credentials.pid)
            await trio.aclose_forcefully(stream)
            return
        try:
            async with broker:
                await broker.wait_closed()
        except (rpc.RPCError, trio.BrokenResourceError, OSError) as exc:
            log.info("connection from the front ended: %s", exc)

    async with trio.open_nursery() as nursery:

        def dispatch(stream: trio.abc.Stream) -> None:
            nursery.start_soon(serve_one, stream)

        for listener in listeners:
            nursery.start_soon(accept_forever, listener, dispatch)
        task_status.started()
