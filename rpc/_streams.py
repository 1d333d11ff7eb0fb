"""Byte streams with credit-based flow control: `StreamSender`, `StreamReceiver`.

A stream goes in a call's arguments or in an answer like any other value. The
side that sends a `StreamSender` produces bytes; the peer gets a
`StreamReceiver` and consumes them. The consumer announces a window in its
hello; the producer may have at most that many bytes in flight and unconsumed,
and the consumer grants more as its application takes bytes out. So the
consumer buffers at most one window per stream, the producer's writes wait
(`send_all` blocks) while the window is full, and the consumer's pace governs
the producer's.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._protocol import Protocol

MAX_CHUNK = 1024 * 1024  # largest STREAM_DATA payload sent, if credit allows


class StreamSender(trio.abc.SendStream):
    """The producing end of a stream, to be passed in a call or returned.

    Create one, put it in a call's arguments or a method's result, and write
    to it with `send_all`, which waits until the value has been sent and the
    consumer has granted credit. `aclose` ends the stream; `abort` ends it
    with an error the consumer sees. Or give an async iterable of bytes as
    ``source``: once the stream is sent, the broker feeds it from the
    iterable in a task of the connection (closing the stream at the end,
    aborting it with the exception's text if the iterable raises, and
    stopping the iteration if the consumer stops reading). Or give the whole
    content as ``source`` (bytes): it goes out right behind the message that
    carries the stream, as far as the consumer's window allows (the rest
    from a task, as credit comes), and the stream ends.

    Errors: `send_all` raises `StreamError` once the consumer has stopped
    reading, `ConnectionLost` once the connection is gone. It waits as long
    as the sender has not been sent: if the call meant to carry it fails,
    `abort` the sender (a waiting `send_all` then raises
    `trio.ClosedResourceError`) or cancel the writing task. A sender can be
    sent once; one task at a time may write to it.
    """

    def __init__(self, source: AsyncIterable[bytes] | bytes | None = None) -> None:
        self.source = source
        self._protocol: Protocol | None = None
        self._stream_id = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._error: BaseException | None = None
        self._finish: tuple[str, str] | None = None  # ("end", "") or ("abort", reason)

    @property
    def sent(self) -> bool:
        """Whether the stream has been sent to a peer."""
        return self._protocol is not None

    def _attach(self, protocol: Protocol, stream_id: int) -> None:
        self._protocol = protocol
        self._stream_id = stream_id
        if self._finish is not None:
            self._send_finish()
        elif self.source is not None and protocol.owner is not None:
            protocol.owner._start_pump(self)
        self._lot.unpark_all()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._lot.unpark_all()

    def _credit_changed(self) -> None:
        self._lot.unpark_all()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, waiting for the value to be sent and for credit."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._finish is not None:
            raise trio.ClosedResourceError("the stream is already closed")
        view = memoryview(data).cast("B")
        while view:
            protocol = await self._wait_for_credit()
            size = min(len(view), protocol.send_credit(self._stream_id), protocol.max_chunk)
            if await protocol.owner._send_stream_data(self._stream_id, view[:size]):
                view = view[size:]
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the stream is sent and the consumer has granted credit."""
        await self._wait_for_credit()

    async def _wait_for_credit(self) -> Protocol:
        while True:
            if self._error is not None:
                raise self._error
            if self._finish is not None:
                raise trio.ClosedResourceError("the stream was closed while waiting to send")
            protocol = self._protocol
            if protocol is not None and protocol.send_credit(self._stream_id) > 0:
                return protocol
            await self._lot.park()

    async def aclose(self) -> None:
        """End the stream (the consumer reads b"" after the data). Idempotent."""
        self._close("end", "")
        await trio.lowlevel.checkpoint()

    def abort(self, reason: str) -> None:
        """End the stream with an error: the consumer's reads raise `StreamError`."""
        self._close("abort", reason)

    def _close(self, kind: str, reason: str) -> None:
        if self._finish is not None:
            return
        self._finish = (kind, reason)
        self._lot.unpark_all()
        if self._protocol is not None:
            self._send_finish()

    def _send_finish(self) -> None:
        if self._error is not None:
            return  # the consumer is gone; there is no one to tell
        kind, reason = self._finish
        broker = self._protocol.owner
        if broker is not None:
            broker._finish_stream(self._stream_id, kind, reason)


class StreamReceiver(trio.abc.ReceiveStream):
    """The consuming end of a stream, as received in arguments or a result.

    A trio `ReceiveStream`: `receive_some` returns the next bytes, b"" at the
    end; ``async for chunk in receiver`` works too. Taking bytes out grants
    the producer more credit. `aclose` (or dropping the last reference to the
    receiver) tells the producer to stop. Bytes that arrived before an abort
    or a lost connection are still delivered; then `receive_some` raises
    `StreamError` (the producer aborted, with its reason) or `ConnectionLost`.
    """

    def __init__(self, protocol: Protocol, stream_id: int) -> None:
        self._protocol = protocol
        self._stream_id = stream_id
        self._chunks: collections.deque[bytes] = collections.deque()
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def _deliver(self, data: bytes, end: bool) -> None:
        if data and not self._closed:
            self._chunks.append(data)
        if end:
            self._ended = True
        self._lot.unpark_all()

    def _fail(self, error: BaseException) -> None:
        if not self._ended and self._error is None:
            self._error = error
        self._lot.unpark_all()

    async def receive_some(self, max_bytes: int | None = None, *, timeout: float | None = None) -> bytes:
        """Return the next bytes (at most ``max_bytes``), or b"" at the end.

        With ``timeout``, wait at most that many seconds for bytes to arrive
        (`trio.TooSlowError` beyond); bytes already here cost no timer.
        """
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        deadline = None
        while not self._chunks:
            if self._closed:
                raise trio.ClosedResourceError("the stream receiver is closed")
            if self._error is not None:
                raise self._error
            if self._ended:
                break
            if timeout is None:
                await self._lot.park()
            else:
                if deadline is None:
                    deadline = trio.current_time() + timeout
                with trio.CancelScope(deadline=deadline) as waiting:
                    await self._lot.park()
                if waiting.cancelled_caught:
                    raise trio.TooSlowError(f"no bytes within {timeout:g} s")
            parked = True
        chunk = b""
        if self._chunks:
            chunk = self._chunks.popleft()
            if max_bytes is not None and len(chunk) > max_bytes:
                self._chunks.appendleft(chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            broker = self._protocol.owner
            if broker is not None:
                broker._stream_consumed(self._stream_id, len(chunk))
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return chunk

    async def aclose(self) -> None:
        """Stop reading: the producer is told to stop, buffered bytes are dropped."""
        self._stop()
        await trio.lowlevel.checkpoint()

    def _stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        if not self._ended and self._error is None:
            self._protocol.stream_dropped(self._stream_id)
        self._lot.unpark_all()

    def __del__(self) -> None:
        # A receiver dropped unread must not leave its producer blocked on credit.
        if not (self._closed or self._ended or self._error is not None):
            self._protocol.stream_dropped(self._stream_id)


class OutgoingStreamState:
    """A stream we produce: its sender and the credit the consumer gave us."""

    __slots__ = ("sender", "credit")

    def __init__(self, sender: StreamSender, credit: int) -> None:
        self.sender = sender
        self.credit = credit


class IncomingStreamState:
    """A stream we consume: its receiver (weakly) and the credit accounting."""

    __slots__ = ("receiver_ref", "unacknowledged", "consumed")

    def __init__(self, receiver: StreamReceiver) -> None:
        self.receiver_ref = weakref.ref(receiver)
        self.unacknowledged = 0  # bytes received and not yet given back as credit
        self.consumed = 0  # bytes the application took since the last CREDIT
