"""The broker: drives a `Protocol` over a trio stream, through a `Transport`.

One broker serves one connection. It runs, in a nursery of its own, one
reader task (bytes in, events dispatched), one writer task (for bytes that
could not be written at once; see `rpc._transport`), the tasks of incoming
``async`` calls and the pumps of streams with a source. It turns events into
Python: answers wake the callers waiting for them, calls run
``remote_<name>`` methods, stream data reaches the receivers. It is the
`rpc._connection.Connection` of the connection's references and streams,
which call it to send calls, stream data, credit and ends.

Memory: producers of bulk data (calls, one-way sends, stream data) wait while
the send queue is over its high-water mark; answers and control messages do
not wait, and past ``max_send_queue + max_frame`` bytes (see `rpc.Limits`)
the connection is closed: the peer is not reading.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import traceback
import types
from collections.abc import AsyncIterable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import outcome
import trio

from . import _wire as wire
from ._copyable import copy_name
from ._credentials import PeerCredentials, peer_credentials, socket_of
from ._errors import (
    ConnectionLost,
    DeadReference,
    HandshakeError,
    NoSuchMethod,
    ProtocolError,
    RemoteError,
    RPCError,
    StreamError,
    TooManyCalls,
)
from ._events import (
    Answer,
    Call,
    Cancel,
    Error,
    Event,
    Goodbye,
    HandshakeDone,
    Send,
    StreamAborted,
    StreamCredit,
    StreamData,
    StreamStopped,
)
from ._pending import PendingCall
from ._protocol import Protocol
from ._references import Referenceable, RemoteReference, run_callback
from ._streams import CAN_SPLICE, PipePool, StreamSender
from ._transport import SEND_HIGH_WATER, Transport

if TYPE_CHECKING:
    from ._connection import StreamEnd

# A running ``async def remote_<name>`` method.
MethodCoroutine = Coroutine[Any, Any, Any]

module_logger = logging.getLogger("rpc")

# Content given whole is queued (as views: it is in memory anyway) up to this
# much in the send queue, more than other bulk data (SEND_HIGH_WATER): a few
# large answers coalesced in one write should not each need a task.
CONTENT_HIGH_WATER = 4 * SEND_HIGH_WATER


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Broker:
    """One end of an RPC connection over a trio stream (UNIX, TCP, TLS, memory).

    Use it as an async context manager: entering starts the connection's
    tasks and exchanges the hello (raising `HandshakeError` if the peer does
    not speak this protocol or version, or says nothing within
    ``handshake_timeout`` seconds); leaving closes the connection at once:
    a goodbye is sent, pending calls fail with `ConnectionLost`, the tasks of
    incoming calls are cancelled, and the stream is closed. The connection
    also ends when the peer hangs up or breaks the protocol; the reason is
    logged (logger ``rpc``) and kept in `close_reason`.

    ``root`` is offered to the peer as its `getRootObject`. ``limits`` bounds
    what the peer may send (see `rpc.Limits`). With ``send_tracebacks`` the
    peer gets the formatted traceback of exceptions raised by our methods.
    With ``splice_payloads`` (Linux, a plain socket), large payloads of the
    streams we receive are moved into pipes without passing through user
    space, for consumers that relay them (`StreamReceiver.receive_piece`).
    ``logger`` (a ``Logger`` or ``LoggerAdapter``) receives this connection's
    log lines instead of the ``rpc`` logger.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        root: Referenceable | None = None,
        *,
        limits: wire.Limits | None = None,
        send_tracebacks: bool = False,
        handshake_timeout: float = 10.0,
        splice_payloads: bool = False,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.limits = limits if limits is not None else wire.Limits()
        # Where this connection's lines go (logger ``rpc`` by default): an owner
        # whose peer may be hostile can give an adapter that rate-limits them.
        self._logger = logger if logger is not None else module_logger
        # Large payloads of incoming streams go into pipes (see StreamReceiver).
        self.splice_payloads = splice_payloads
        self._socket = socket_of(stream)
        self._transport = Transport(stream, self.limits.max_send_queue + self.limits.max_frame,
                                    self._queue_overflowed)
        self._protocol = Protocol(self.limits, root=root, connection=self)
        self._protocol.carries_fds = self._transport.carries_fds
        self._protocol.on_output = self._schedule_flush
        self._send_tracebacks = send_tracebacks
        self._handshake_timeout = handshake_timeout
        self.closed = False
        self.close_reason: str | None = None
        self._close_error: ConnectionLost | None = None
        self._goodbye = b""
        self._disconnect_callbacks: list[Callable[[], object]] = []
        self._waiting: dict[int, trio.lowlevel.Task | PendingCall] = {}  # our calls, by id
        self._running: dict[int, trio.CancelScope] = {}
        self._queued: collections.deque[tuple[int | None, MethodCoroutine]] = collections.deque()
        self._active_calls = 0
        self._refused_before = False
        self._one_way_failed_before = False
        self._pipes: PipePool | None = None  # made on first use (see _take_pipe)
        self._flush_scheduled = False
        self._processing = False  # the reader is dispatching events (see _schedule_flush)
        self._thread = 0  # the trio thread's id
        # Streams given whole (and their content), sent but not their content yet.
        self._content_due: list[tuple[StreamSender, bytes]] = []
        self._token: trio.lowlevel.TrioToken | None = None  # taken on entering
        self._handshake_done = trio.Event()
        self._finished = trio.Event()
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._inner: trio.Nursery | None = None  # the nursery of the connection's tasks, while it runs

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Broker:
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()
        self._nursery_manager = manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            await nursery.start(self._run)
            with trio.move_on_after(self._handshake_timeout):
                await self._handshake_done.wait()
            if self._protocol.peer is None and not self.closed:
                self._fail(HandshakeError(
                    f"no hello from the peer within {self._handshake_timeout} s"), goodbye=False)
            if self._protocol.peer is None:
                error = self._close_error
                assert error is not None  # no hello: the connection was failed, above or by the reader
                raise type(error)(error.reason)
        except BaseException:
            self._fail(ConnectionLost("handshake interrupted"), goodbye=False)
            await manager.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> bool:
        self._close_locally()
        assert self._nursery_manager is not None  # made by __aenter__
        await self._nursery_manager.__aexit__(None, None, None)
        return False

    async def aclose(self) -> None:
        """Close the connection now (as leaving the ``async with`` does) and wait until it is."""
        self._close_locally()
        await self._finished.wait()

    def _close_locally(self) -> None:
        self._fail(ConnectionLost("closed by this side"), goodbye=True,
                   peer_reason="normal close")

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side or by an error."""
        await self._finished.wait()

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as inner:
                self._inner = inner
                if self.closed:
                    inner.cancel_scope.cancel()
                self._write(self._protocol.hello())
                inner.start_soon(self._reader)
                inner.start_soon(self._writer)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._transport.send_last_words(self._goodbye)
                await trio.aclose_forcefully(self._transport.stream)
                self._transport.release()
                self._protocol.discard_fds()
                self._finished.set()

    def _fail(self, error: ConnectionLost, *, goodbye: bool, peer_reason: str | None = None) -> None:
        """End the connection: fail everything pending, cancel our tasks, run callbacks.

        With ``goodbye``, a GOODBYE carrying ``peer_reason`` (default: the
        error's reason) is the last thing sent.
        """
        if self.closed:
            return
        self.closed = True
        self.close_reason = error.reason
        self._close_error = error
        if isinstance(error, ProtocolError):
            self._logger.warning("rpc: closing connection %s: %s", self._describe_peer(), error.reason)
        else:
            self._logger.debug("rpc: connection %s ended: %s", self._describe_peer(), error.reason)
        if goodbye and self._protocol.peer is not None:
            self._goodbye = self._protocol.goodbye(peer_reason or error.reason)
        references, senders, receivers = self._protocol.close()
        error_type = type(error)
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            self._fail_waiter(waiter, error_type(error.reason))
        for _call_id, coroutine in self._queued:
            coroutine.close()
        self._queued.clear()
        for sender in senders:
            sender._fail(ConnectionLost(error.reason))
        for receiver in receivers:
            receiver._fail(ConnectionLost(error.reason))
        if self._inner is not None:
            self._inner.cancel_scope.cancel()
        self._handshake_done.set()
        self._transport.close()
        if self._pipes is not None:
            self._pipes.close()  # pipes still held by receivers are closed as they give them back
        for reference in references:
            reference._disconnected()
        callbacks, self._disconnect_callbacks = self._disconnect_callbacks, []
        for callback in callbacks:
            run_callback(callback)

    def _describe_peer(self) -> str:
        if self._socket is None:
            return "(no socket)"
        try:
            credentials = peer_credentials(self._socket)
            if credentials is not None:
                return f"(peer pid {credentials.pid}, uid {credentials.uid})"
            return f"(peer {self._socket.getpeername()})"
        except OSError:
            return "(peer gone)"

    # ------------------------------------------------------------ public API

    async def getRootObject(self) -> RemoteReference:
        """The peer's root object, as a `RemoteReference` (no round trip).

        Raises `RPCError` if the peer offers no root, `DeadReference` if the
        connection is closed.
        """
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise DeadReference(f"connection closed ({self.close_reason})")
        root = self._protocol.peer_root
        if root is None:
            raise RPCError("the peer offers no root object")
        return root

    def notifyOnDisconnect(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the connection closes (at once if it is closed).

        Exceptions from the callback are logged and otherwise ignored.
        """
        if self.closed:
            run_callback(callback)
        else:
            self._disconnect_callbacks.append(callback)

    def dontNotifyOnDisconnect(self, callback: Callable[[], object]) -> None:
        """Undo `notifyOnDisconnect`; a callback not registered is ignored."""
        try:
            self._disconnect_callbacks.remove(callback)
        except ValueError:
            pass

    def peer_credentials(self) -> PeerCredentials | None:
        """pid, uid and gid of the peer process for a UNIX socket, None otherwise."""
        if self._socket is None:
            return None
        return peer_credentials(self._socket)

    @property
    def peer_limits(self) -> wire.PeerHello | None:
        """The limits the peer announced in its hello (None before the handshake)."""
        return self._protocol.peer

    @property
    def open_streams(self) -> int:
        """Streams of this connection, either way, not yet ended (for a server
        that closes idle connections: one with a body still flowing is not)."""
        return self._protocol.open_streams

    @property
    def send_queue_size(self) -> int:
        """Bytes accepted for sending and not yet written to the stream."""
        return self._transport.queue_size

    def _write(self, *buffers: bytes | memoryview) -> None:
        # A lone exchange is written at once (its latency is what counts);
        # while other calls are in flight, writes are coalesced (see
        # rpc._transport): the peer is busy anyway, and reads them in one go.
        at_once = len(self._waiting) + self._active_calls <= 1
        if self._protocol.outgoing_fds:  # the message just encoded passes open files
            fds, self._protocol.outgoing_fds = self._protocol.outgoing_fds, []
            (message,) = buffers
            assert type(message) is bytes
            self._transport.write_with_fds(message, fds, at_once=at_once)
        else:
            self._transport.write(*buffers, at_once=at_once)
        if self._content_due:  # the message just written carried streams given whole
            self._send_content()

    def _queue_overflowed(self, size: int) -> None:
        # Called from inside a write: close from the loop, not under the writer's caller.
        assert self._token is not None  # writes begin once the broker is entered
        self._token.run_sync_soon(functools.partial(
            self._fail, ProtocolError(f"peer is not reading: {size} bytes queued for it"),
            goodbye=False))

    def _schedule_flush(self) -> None:
        # Called when a reference is collected or a receiver dropped, which
        # can happen anywhere (even in another thread): defer to the loop,
        # unless the reader is dispatching in this thread: it sends control
        # messages when it is done (the common case: a method's arguments
        # are dropped as it returns), with the answers.
        if self._flush_scheduled or self.closed or self._token is None:
            return
        if self._processing and threading.get_ident() == self._thread:
            return
        self._flush_scheduled = True
        try:
            self._token.run_sync_soon(self._flush_control)
        except trio.RunFinishedError:
            pass

    def _flush_control(self) -> None:
        self._flush_scheduled = False
        data = self._protocol.data_to_send()
        if data:
            self._write(data)

    async def _writer(self) -> None:
        try:
            await self._transport.write_loop()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(ConnectionLost(f"connection lost while writing: {exc!r}"), goodbye=False)

    async def _reader(self) -> None:
        try:
            await self._transport.read_loop(self._process, self._protocol.direct_read_size,
                                            self._protocol.splice_fd, self._process_spliced,
                                            self._protocol.receive_fds, self._protocol.accepted_fds)
            if self._protocol.buffered:
                raise ConnectionLost(f"the peer closed the connection in the middle of a frame "
                                     f"({self._protocol.buffered} bytes received)")
            self._fail(ConnectionLost("the peer closed the connection"), goodbye=False)
        except ProtocolError as exc:
            self._fail(exc, goodbye=True)
        except ConnectionLost as exc:
            self._logger.warning("rpc: connection %s lost: %s", self._describe_peer(), exc.reason)
            self._fail(exc, goodbye=False)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(ConnectionLost(f"connection lost: {exc!r}"), goodbye=False)

    def _process_spliced(self, size: int) -> None:
        receiver = self._protocol.receive_spliced(size)
        if receiver is not None:
            receiver._deliver_spliced(size)

    def _take_pipe(self) -> tuple[int, int] | None:
        """A pipe for a receiver's spliced payloads (None: not on this platform or connection)."""
        if not CAN_SPLICE or self._transport.fd is None or self.closed:
            return None
        if self._pipes is None:
            self._pipes = PipePool(self.limits.stream_window)
        return self._pipes.take()

    def _give_back_pipe(self, pipe: tuple[int, int], empty: bool) -> None:
        assert self._pipes is not None  # the pool that gave the pipe
        self._pipes.give_back(pipe, empty)

    def _process(self, data: bytes | memoryview) -> None:
        events = self._protocol.receive_data(data)
        self._processing = True
        # Everything dispatching produces (answers, the content of streams
        # given whole, their ends, the releases of the arguments) goes out in
        # one write: one system call here, one wakeup of the peer.
        self._transport.corked = True
        try:
            if len(events) == 1:
                self._dispatch[type(events[0])](self, events[0])
            elif events:
                for event in events:
                    if self.closed:
                        return
                    self._dispatch[type(event)](self, event)
                del event
            # The events hold the arguments of the calls: dropping them now
            # lets the releases that follow go with the answers.
            events.clear()
            control = self._protocol.data_to_send()
            if control:
                self._write(control)
        finally:
            self._processing = False
            if self._transport.corked:
                self._transport.uncork()

    # ------------------------------------------------- events: our calls

    async def _make_room(self) -> None:
        """Wait for room in the send queue; raise at once if the connection is closed."""
        await self._transport.wait_for_room()
        if self.closed:
            raise DeadReference(f"connection closed ({self.close_reason})")

    async def _send_call(self, object_id: int, method: str, args: Sequence[Any], kwargs: dict[str, Any],
                         waiter: trio.lowlevel.Task | PendingCall) -> int:
        """Send a CALL whose outcome goes to ``waiter``; return its call id."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed or self._transport.queue_size > SEND_HIGH_WATER:
            await self._make_room()  # the slow path, kept out of the way of every call
        call_id, data = self._protocol.call(object_id, method, args, kwargs)
        self._waiting[call_id] = waiter
        self._write(data)
        return call_id

    async def _call(self, object_id: int, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        call_id = await self._send_call(object_id, method, args, kwargs, trio.lowlevel.current_task())

        def abort(_raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # The caller was cancelled: tell the peer, and forget the call so
            # that its late answer is dropped.
            self._abandon_call(call_id)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    async def _start_pending_call(self, object_id: int, method: str, args: Sequence[Any],
                                  kwargs: dict[str, Any]) -> PendingCall:
        # No schedule point after sending: the caller is about to wait anyway.
        call = PendingCall(self)
        call.call_id = await self._send_call(object_id, method, args, kwargs, call)
        return call

    def _abandon_call(self, call_id: int) -> None:
        """Forget a call of ours (its late answer is dropped) and tell the peer to cancel it."""
        self._waiting.pop(call_id, None)
        if not self.closed:
            cancel = self._protocol.cancel(call_id)
            if cancel:
                self._write(cancel)

    async def _send_one_way(self, object_id: int, method: str, args: Sequence[Any],
                            kwargs: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed or self._transport.queue_size > SEND_HIGH_WATER:
            await self._make_room()
        self._write(self._protocol.send(object_id, method, args, kwargs))
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _on_answer(self, event: Answer) -> None:
        waiter = self._waiting.pop(event.call_id, None)
        if type(waiter) is PendingCall:
            waiter._finish(event.value, None)
        elif waiter is not None:
            trio.lowlevel.reschedule(waiter, outcome.Value(event.value))

    def _on_error(self, event: Error) -> None:
        waiter = self._waiting.pop(event.call_id, None)
        if waiter is None:
            return
        if event.code == wire.ERR_EXCEPTION and isinstance(event.exception, Exception):
            error: Exception = event.exception
        elif event.code == wire.ERR_NO_SUCH_METHOD:
            error = NoSuchMethod(event.type_name, event.message, event.traceback)
        elif event.code == wire.ERR_DEAD_REFERENCE:
            error = DeadReference(event.message)
        elif event.code == wire.ERR_TOO_MANY_CALLS:
            error = TooManyCalls(event.type_name, event.message, event.traceback)
        else:
            error = RemoteError(event.type_name, event.message, event.traceback)
        self._fail_waiter(waiter, error)

    @staticmethod
    def _fail_waiter(waiter: trio.lowlevel.Task | PendingCall, error: BaseException) -> None:
        if type(waiter) is PendingCall:
            waiter._finish(None, error)
        else:
            trio.lowlevel.reschedule(waiter, outcome.Error(error))

    # ------------------------------------------------ events: peer's calls

    def _on_call(self, event: Call) -> None:
        self._start_call(event.call_id, event.target, event.method, event.args, event.kwargs)

    def _on_send(self, event: Send) -> None:
        self._start_call(None, event.target, event.method, event.args, event.kwargs)

    def _start_call(self, call_id: int | None, target: Any, name: str, args: list[Any],
                    kwargs: dict[str, Any]) -> None:
        """Run ``remote_<name>``: inline if it is a plain function, else in a task."""
        if target is None:
            self._refuse(call_id, wire.ERR_DEAD_REFERENCE, "DeadReference",
                         "the object called is no longer exported")
            return
        method = getattr(target, "remote_" + name, None)
        if method is None or not callable(method):
            self._refuse(call_id, wire.ERR_NO_SUCH_METHOD, "NoSuchMethod",
                         f"No such method: remote_{name}")
            return
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            self._finish_with_exception(call_id, exc)
            return
        if isinstance(result, types.CoroutineType):
            if self._active_calls < self.limits.max_calls:
                self._launch(call_id, result)
            elif len(self._queued) < self.limits.max_queued_calls:
                self._queued.append((call_id, result))
            else:
                result.close()
                self._refuse(call_id, wire.ERR_TOO_MANY_CALLS, "TooManyCalls",
                             f"{self.limits.max_calls} calls running and "
                             f"{self.limits.max_queued_calls} waiting")
        elif call_id is not None:
            self._answer(call_id, result)

    def _refuse(self, call_id: int | None, code: int, type_name: str, message: str) -> None:
        # A flood would flood the log too: warn once per connection.
        level = logging.DEBUG if self._refused_before else logging.WARNING
        self._refused_before = True
        self._logger.log(level, "rpc: refused a call %s: %s", self._describe_peer(), message)
        if call_id is not None:
            self._write(self._protocol.error(call_id, code, type_name, message))

    def _answer(self, call_id: int, result: Any) -> None:
        try:
            data = self._protocol.answer(call_id, result)
        except Exception as exc:
            data = self._protocol.error(
                call_id, wire.ERR_EXCEPTION, _type_name(exc), f"the result could not be sent: {exc}")
        self._write(data)

    def _finish_with_exception(self, call_id: int | None, exc: Exception) -> None:
        if call_id is None:
            # No one to answer, so the log is the only trace; a peer sending
            # failing one-way calls in a loop must not flood it: once per connection.
            level = logging.DEBUG if self._one_way_failed_before else logging.WARNING
            self._one_way_failed_before = True
            self._logger.log(level, "rpc: one-way call %s failed", self._describe_peer(), exc_info=exc)
            return
        self._logger.debug("rpc: call %d raised", call_id, exc_info=exc)
        formatted = "".join(traceback.format_exception(exc)) if self._send_tracebacks else None
        copied = exc if copy_name(type(exc)) is not None else None
        self._write(self._protocol.error(
            call_id, wire.ERR_EXCEPTION, _type_name(exc), str(exc), formatted, copied))

    def _launch(self, call_id: int | None, coroutine: MethodCoroutine) -> None:
        # The scope is registered now, not when the task starts, so that a
        # CANCEL arriving in between is not lost.
        nursery = self._inner
        assert nursery is not None  # calls come from the reader, a task of this nursery
        self._active_calls += 1
        scope = trio.CancelScope()
        if call_id is not None:
            self._running[call_id] = scope
        nursery.start_soon(self._run_call, call_id, coroutine, scope)

    async def _run_call(self, call_id: int | None, coroutine: MethodCoroutine,
                        scope: trio.CancelScope) -> None:
        try:
            with scope:
                try:
                    result = await coroutine
                except Exception as exc:
                    self._finish_with_exception(call_id, exc)
                else:
                    if call_id is not None:
                        self._answer(call_id, result)
            if scope.cancelled_caught and call_id is not None:
                self._write(self._protocol.error(
                    call_id, wire.ERR_CANCELLED, "Cancelled", "cancelled by the caller"))
        finally:
            if call_id is not None:
                del self._running[call_id]
            self._active_calls -= 1
            if self._queued and not self.closed:
                self._launch(*self._queued.popleft())

    def _on_cancel(self, event: Cancel) -> None:
        scope = self._running.get(event.call_id)
        if scope is not None:
            scope.cancel()
            return
        for index, (call_id, coroutine) in enumerate(self._queued):
            if call_id == event.call_id:
                del self._queued[index]
                coroutine.close()
                self._write(self._protocol.error(
                    call_id, wire.ERR_CANCELLED, "Cancelled", "cancelled by the caller"))
                return

    # ------------------------------------------------------ events: other

    def _on_handshake(self, event: HandshakeDone) -> None:
        self._handshake_done.set()

    def _on_goodbye(self, event: Goodbye) -> None:
        self._fail(ConnectionLost(f"the peer closed the connection: {event.reason}"), goodbye=False)

    def _on_stream_data(self, event: StreamData) -> None:
        event.receiver._deliver(event.data, event.end)

    def _on_stream_aborted(self, event: StreamAborted) -> None:
        event.receiver._fail(StreamError(f"the producer aborted the stream: {event.reason}"))

    def _on_stream_credit(self, event: StreamCredit) -> None:
        event.sender._credit_changed()

    def _on_stream_stopped(self, event: StreamStopped) -> None:
        event.sender._fail(StreamError("the consumer stopped reading the stream"))

    _dispatch: ClassVar[dict[type[Event], Callable[[Broker, Any], None]]] = {
        Answer: _on_answer, Error: _on_error, Call: _on_call, Send: _on_send,
        Cancel: _on_cancel, HandshakeDone: _on_handshake, Goodbye: _on_goodbye,
        StreamData: _on_stream_data, StreamAborted: _on_stream_aborted,
        StreamCredit: _on_stream_credit, StreamStopped: _on_stream_stopped,
    }

    # --------------------------------------------------------------- streams

    def _start_pump(self, sender: StreamSender, source: AsyncIterable[bytes] | bytes) -> None:
        if self._inner is None or self.closed:
            return
        if isinstance(source, bytes):
            self._content_due.append((sender, source))  # written behind the message that carries it (see _write)
        else:
            self._inner.start_soon(self._pump, sender, source)

    def _send_content(self) -> None:
        """Send the content of streams given whole, right behind the message that
        carried them: as far as credit goes and the send queue is under
        ``CONTENT_HIGH_WATER``, at once; the rest from a task of the connection."""
        nursery = self._inner
        assert nursery is not None  # content is due only once _start_pump found it
        due, self._content_due = self._content_due, []
        protocol = self._protocol
        for sender, content in due:
            rest = memoryview(content)
            stream_id = sender._stream_id
            while rest and self._transport.queue_size <= CONTENT_HIGH_WATER:
                size = min(len(rest), protocol.send_credit(stream_id), protocol.max_chunk)
                if not size:
                    break
                self._write(*protocol.stream_data(stream_id, rest[:size]))
                rest = rest[size:]
            if rest:
                nursery.start_soon(self._send_rest, sender, rest)
            else:
                sender._close("end", "")

    async def _send_rest(self, sender: StreamSender, rest: memoryview) -> None:
        try:
            await sender.send_all(rest)
        except (StreamError, ConnectionLost):
            return  # the consumer stopped, or the connection is gone: nothing to tell
        await sender.aclose()

    async def _pump(self, sender: StreamSender, source: AsyncIterable[bytes]) -> None:
        try:
            async for chunk in source:
                await sender.send_all(chunk)
        except (StreamError, ConnectionLost):
            pass  # the consumer stopped, or the connection is gone: nothing to tell
        except Exception as exc:
            self._logger.warning("rpc: stream source failed", exc_info=exc)
            sender.abort(f"{_type_name(exc)}: {exc}")
        else:
            await sender.aclose()
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    def _send_credit(self, stream_id: int) -> int:
        return self._protocol.send_credit(stream_id)

    async def _send_stream_data(self, stream_id: int, data: memoryview) -> int:
        """Send the start of ``data`` that the stream's credit allows, in one chunk;
        return its size (0 if the stream ended while we waited for room)."""
        if self._transport.queue_size > SEND_HIGH_WATER:
            await self._transport.wait_for_room()
        if self._close_error is not None:
            raise ConnectionLost(self._close_error.reason)
        protocol = self._protocol
        size = min(len(data), protocol.send_credit(stream_id), protocol.max_chunk)
        if size:
            self._write(*protocol.stream_data(stream_id, data[:size]))
        return size

    def _finish_stream(self, stream_id: int, end: StreamEnd, reason: str) -> None:
        if not self.closed:
            data = self._protocol.finish_stream(stream_id, end, reason)
            if data:
                self._write(data)

    def _stream_consumed(self, stream_id: int, size: int) -> None:
        if not self.closed:
            data = self._protocol.stream_consumed(stream_id, size)
            if data:
                self._write(data)
