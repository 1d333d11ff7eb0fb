"""Byte streams with credit-based flow control: `StreamSender`, `StreamReceiver`.

A stream goes in a call's arguments or in an answer like any other value. The
side that sends a `StreamSender` produces bytes; the peer gets a
`StreamReceiver` and consumes them. The consumer announces a window in its
hello; the producer may have at most that many bytes in flight and unconsumed,
and the consumer grants more as its application takes bytes out. So the
consumer buffers at most one window per stream, the producer's writes wait
(`send_all` blocks) while the window is full, and the consumer's pace governs
the producer's.

The credit accounting is the protocol's (`rpc._protocol`); a stream reaches
its connection (the `rpc._connection.Connection` the protocol gives it) to
send data, credit or its end.
"""

from __future__ import annotations

import collections
import fcntl
import os
import weakref
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._codec import ValueCodec
    from ._connection import Connection, StreamEnd

MAX_CHUNK = 1024 * 1024  # largest STREAM_DATA payload sent, if credit allows
F_SETPIPE_SZ = 1031  # fcntl: set a pipe's capacity (Linux)
CAN_SPLICE = hasattr(os, "splice")


def close_pipe(pipe: tuple[int, int]) -> None:
    os.close(pipe[0])
    os.close(pipe[1])


class PipePiece:
    """Bytes of a stream waiting in a pipe, as `StreamReceiver.receive_piece` gives them.

    ``fd`` is the pipe's read end (non-blocking); the next ``size`` bytes in
    it are this piece. Move them out (``os.splice`` to a socket, or
    ``os.read``) and report each move with `consumed`, which grants the
    producer credit. Take no more than ``size`` bytes: the pipe may hold the
    next piece behind them.
    """

    __slots__ = ("_receiver", "fd", "size")

    def __init__(self, receiver: StreamReceiver, fd: int, size: int) -> None:
        self._receiver = receiver
        self.fd = fd
        self.size = size  # bytes of this piece still in the pipe

    def consumed(self, size: int) -> None:
        """``size`` bytes of this piece were taken out of the pipe."""
        if not 0 <= size <= self.size:
            raise ValueError("more bytes consumed than the piece holds")
        self.size -= size
        self._receiver._pipe_consumed(size)

    def read(self, max_bytes: int | None = None) -> bytes:
        """Take up to ``max_bytes`` of the piece out of the pipe, as bytes."""
        data = os.read(self.fd, self.size if max_bytes is None else min(max_bytes, self.size))
        self.consumed(len(data))
        return data

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<PipePiece fd={self.fd} size={self.size}>"


class PipePool:
    """Pipes for spliced stream payloads, kept for reuse by one broker."""

    KEEP = 8

    def __init__(self, size: int) -> None:
        self.size = size
        self._pipes: list[tuple[int, int]] = []
        self.closed = False

    def take(self) -> tuple[int, int] | None:
        if self.closed:
            return None
        if self._pipes:
            return self._pipes.pop()
        try:
            read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None  # out of file descriptors: no splicing, nothing else fails
        try:
            if fcntl.fcntl(write_fd, F_SETPIPE_SZ, self.size) < self.size:
                raise OSError("pipe too small")
        except OSError:
            close_pipe((read_fd, write_fd))
            return None  # no room (pipe-max-size, the user's pipe quota): no splicing
        return read_fd, write_fd

    def give_back(self, pipe: tuple[int, int], empty: bool) -> None:
        if empty and not self.closed and len(self._pipes) < self.KEEP:
            self._pipes.append(pipe)
        else:
            close_pipe(pipe)

    def close(self) -> None:
        self.closed = True
        pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            close_pipe(pipe)


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
        self._connection: Connection | None = None
        self._stream_id = 0  # given when the stream is sent
        self._lot = trio.lowlevel.ParkingLot()
        self._error: BaseException | None = None
        self._finish: tuple[StreamEnd, str] | None = None  # ("end", "") or ("abort", reason)

    @property
    def sent(self) -> bool:
        """Whether the stream has been sent to a peer."""
        return self._stream_id != 0

    def _attach(self, connection: Connection | None, stream_id: int) -> None:
        """The message carrying the stream was encoded, for ``connection``."""
        self._connection = connection
        self._stream_id = stream_id
        if self._finish is not None:
            self._send_finish(*self._finish)
        elif self.source is not None and connection is not None:
            connection._start_pump(self, self.source)
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
            connection = await self._wait_for_credit()
            view = view[await connection._send_stream_data(self._stream_id, view):]
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the stream is sent and the consumer has granted credit."""
        await self._wait_for_credit()

    async def _wait_for_credit(self) -> Connection:
        """Wait until the stream is sent and has credit; return its connection."""
        while True:
            if self._error is not None:
                raise self._error
            if self._finish is not None:
                raise trio.ClosedResourceError("the stream was closed while waiting to send")
            connection = self._connection
            if connection is not None and connection._send_credit(self._stream_id) > 0:
                return connection
            await self._lot.park()

    async def aclose(self) -> None:
        """End the stream (the consumer reads b"" after the data). Idempotent."""
        self._close("end", "")
        await trio.lowlevel.checkpoint()

    def abort(self, reason: str) -> None:
        """End the stream with an error: the consumer's reads raise `StreamError`."""
        self._close("abort", reason)

    def _close(self, end: StreamEnd, reason: str) -> None:
        if self._finish is not None:
            return
        self._finish = (end, reason)
        self._lot.unpark_all()
        if self.sent:
            self._send_finish(end, reason)

    def _send_finish(self, end: StreamEnd, reason: str) -> None:
        if self._error is not None:
            return  # the consumer is gone; there is no one to tell
        if self._connection is not None:
            self._connection._finish_stream(self._stream_id, end, reason)


class StreamReceiver(trio.abc.ReceiveStream):
    """The consuming end of a stream, as received in arguments or a result.

    A trio `ReceiveStream`: `receive_some` returns the next bytes, b"" at the
    end; ``async for chunk in receiver`` works too. Taking bytes out grants
    the producer more credit. `aclose` (or dropping the last reference to the
    receiver) tells the producer to stop. Bytes that arrived before an abort
    or a lost connection are still delivered; then `receive_some` raises
    `StreamError` (the producer aborted, with its reason) or `ConnectionLost`.

    Large payloads can skip user space: on a broker made with
    ``splice_payloads=True``, they are moved from the socket into a pipe of
    this receiver (``os.splice``), and `receive_piece` hands them on as
    `PipePiece` objects, to be spliced on to another socket. `receive_some`
    works as ever (it reads the pipe).
    """

    def __init__(self, codec: ValueCodec, connection: Connection | None, stream_id: int) -> None:
        self._codec = codec  # told when the receiver is dropped (it queues the STOP)
        self._connection = connection
        self._stream_id = stream_id
        # bytes, or ints: that many bytes waiting in the pipe, in order
        self._chunks: collections.deque[bytes | int] = collections.deque()
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()
        self._pipe: tuple[int, int] | None = None  # (read end, write end) while splicing
        self._in_pipe = 0  # bytes in the pipe
        self._piece: PipePiece | None = None  # the last piece handed out
        self._no_pipe = False  # the broker had no pipe to give: payloads come as bytes

    def _splice_fd(self) -> int | None:
        """The write end of this receiver's pipe, into which the large payload
        coming may be spliced; None if it must be read as bytes.

        The pipe is taken on the first large payload, if the broker splices
        (``splice_payloads``) and has one to give; a receiver that got none
        does not ask again.
        """
        if self._pipe is None:
            connection = self._connection
            if (self._no_pipe or self._closed or self._error is not None or connection is None
                    or not connection.splice_payloads):
                return None
            self._pipe = connection._take_pipe()
            if self._pipe is None:
                self._no_pipe = True
                return None
        return self._pipe[1] if not self._closed else None

    def _deliver(self, data: bytes, end: bool) -> None:
        if data and not self._closed:
            self._chunks.append(data)
        if end:
            self._ended = True
        self._lot.unpark_all()

    def _deliver_spliced(self, size: int) -> None:
        self._in_pipe += size
        chunks = self._chunks
        if chunks and type(chunks[-1]) is int:
            chunks[-1] += size
        else:
            chunks.append(size)
        self._lot.unpark_all()

    def _pipe_consumed(self, size: int) -> None:
        self._in_pipe -= size
        if size:
            self._credit(size)

    def _credit(self, size: int) -> None:
        """``size`` bytes were taken out: the producer may send more."""
        if self._connection is not None:
            self._connection._stream_consumed(self._stream_id, size)

    def _pipe_read_end(self) -> int:
        """The pipe's read end, while bytes of the stream are in it."""
        # Counts of piped bytes are queued only while the pipe is held, and it
        # is given back only once they are read or dropped.
        assert self._pipe is not None
        return self._pipe[0]

    def _release_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is None:
            return
        empty = not self._in_pipe
        self._in_pipe = 0
        assert self._connection is not None  # the lender of the pipe
        self._connection._give_back_pipe(pipe, empty)

    def _fail(self, error: BaseException) -> None:
        if not self._ended and self._error is None:
            self._error = error
        self._lot.unpark_all()

    async def _wait(self, timeout: float | None) -> bool:
        """Wait for a chunk, the end or an error; whether it parked."""
        if self._piece is not None and self._piece.size:
            raise RuntimeError("the previous PipePiece was not consumed whole")
        parked = False
        deadline = None
        while not self._chunks:
            if self._closed:
                raise trio.ClosedResourceError("the stream receiver is closed")
            if self._error is not None:
                self._release_pipe()
                raise self._error
            if self._ended:
                self._release_pipe()
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
        return parked

    async def receive_some(self, max_bytes: int | None = None, *, timeout: float | None = None) -> bytes:
        """Return the next bytes (at most ``max_bytes``), or b"" at the end.

        With ``timeout``, wait at most that many seconds for bytes to arrive
        (`trio.TooSlowError` beyond); bytes already here cost no timer.
        """
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = await self._wait(timeout)
        data = b""
        if self._chunks:
            chunk = self._chunks.popleft()
            if isinstance(chunk, int):  # bytes in the pipe
                size = chunk if max_bytes is None else min(chunk, max_bytes)
                if chunk > size:
                    self._chunks.appendleft(chunk - size)
                data = os.read(self._pipe_read_end(), size)
                if len(data) < size:  # cannot be: the bytes are in the pipe
                    raise RuntimeError("stream pipe shorter than expected")
                self._pipe_consumed(size)
            else:
                data = chunk
                if max_bytes is not None and len(data) > max_bytes:
                    self._chunks.appendleft(data[max_bytes:])
                    data = data[:max_bytes]
                self._credit(len(data))
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def receive_piece(self, *, timeout: float | None = None) -> bytes | PipePiece:
        """The next piece: bytes, a `PipePiece` (see the class documentation), or b"" at the end.

        Like `receive_some` (``timeout`` included), but a payload spliced
        into the pipe comes as a `PipePiece`, to be consumed whole before
        the next call. Pieces come in the stream's order.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = await self._wait(timeout)
        piece: bytes | PipePiece = b""
        if self._chunks:
            chunk = self._chunks.popleft()
            if isinstance(chunk, int):  # bytes in the pipe
                piece = self._piece = PipePiece(self, self._pipe_read_end(), chunk)
            else:
                piece = chunk
                self._credit(len(piece))
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return piece

    async def aclose(self) -> None:
        """Stop reading: the producer is told to stop, buffered bytes are dropped."""
        self._stop()
        await trio.lowlevel.checkpoint()

    def _stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self._release_pipe()
        if not self._ended and self._error is None:
            self._codec.stream_dropped(self._stream_id)
        self._lot.unpark_all()

    def __del__(self) -> None:
        if self._pipe is not None:
            close_pipe(self._pipe)
            self._pipe = None
        # A receiver dropped unread must not leave its producer blocked on credit.
        if not (self._closed or self._ended or self._error is not None):
            self._codec.stream_dropped(self._stream_id)


class OutgoingStreamState:
    """A stream we produce: its sender and the credit the consumer gave us."""

    __slots__ = ("credit", "sender")

    def __init__(self, sender: StreamSender, credit: int) -> None:
        self.sender = sender
        self.credit = credit


class IncomingStreamState:
    """A stream we consume: its receiver (weakly) and the credit accounting."""

    __slots__ = ("consumed", "receiver_ref", "unacknowledged")

    def __init__(self, receiver: StreamReceiver) -> None:
        self.receiver_ref = weakref.ref(receiver)
        self.unacknowledged = 0  # bytes received and not yet given back as credit
        self.consumed = 0  # bytes the application took since the last CREDIT
