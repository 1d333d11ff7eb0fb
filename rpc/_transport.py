"""Ordered writes and the read loop of one connection, over any trio stream.

All writes go through `Transport.write`, which never blocks. What it is given
is written straight to the socket when nothing is queued and the caller asks
for it (``at_once``: a lone call or answer, whose latency is what counts),
and otherwise queued for `write_loop`, run by the writer task, which writes
everything queued meanwhile in one ``writev`` at its next turn. Coalescing
is the fast way when the connection is busy: a batch of calls or answers
costs one system call and wakes the peer once, instead of once per message.
The queue holds the buffers as given (bytes, or views of bytes: nothing is
copied into it), so a large payload reaches the kernel without a copy.
Plain socket streams are read and written through their file descriptor:
a non-blocking ``os.write`` needs no trip through the scheduler. Other
streams (TLS, in-memory) go through ``send_all`` and ``receive_some``.

Memory: the queue is bounded by the caller: producers of bulk data wait in
`wait_for_room` while more than ``SEND_HIGH_WATER`` bytes are queued; writes
that cannot wait (answers, control messages: the reader must never block, or
two brokers calling each other could deadlock) go in regardless, and past
``max_queue`` bytes ``on_overflow`` is called so that the owner can close the
connection.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

import trio

# An ordinary read is small enough to take little of a large payload that
# follows a frame header: the rest is read on its own (or spliced, see
# read_loop), without a copy.
READ_SIZE = 64 * 1024
MAX_DIRECT_READ = 1024 * 1024  # the most read at once as a chunk of a large stream payload
SEND_HIGH_WATER = 1024 * 1024
LAST_WORDS_TIMEOUT = 1.0
# Buffers per writev (IOV_MAX: 1024 on Linux; POSIX promises 16).
try:
    MAX_BUFFERS = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, ValueError, OSError):
    MAX_BUFFERS = 16
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)

Buffer = bytes | memoryview


def _kept(data: Buffer) -> Buffer:
    """``data`` as it can wait in the queue: a view only of immutable bytes."""
    if type(data) is memoryview and type(data.obj) is not bytes:
        return bytes(data)  # the caller may change or reuse its buffer once we return
    return data


class Transport:
    """The byte-moving half of a broker; see the module documentation."""

    def __init__(self, stream: trio.abc.Stream, max_queue: int,
                 on_overflow: Callable[[int], None]) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self.corked = False  # while set, writes are queued for one `uncork`
        self.closed = False
        self._max_queue = max_queue
        self._on_overflow = on_overflow
        self._queue: collections.deque[Buffer] = collections.deque()
        self._queued = 0  # bytes in _queue
        self._unwritten = 0  # bytes taken from the queue by a send_all under way (not a socket)
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._room_lot = trio.lowlevel.ParkingLot()

    @property
    def queue_size(self) -> int:
        """Bytes accepted for sending and not yet written to the stream."""
        return self._queued + self._unwritten

    def write(self, *buffers: Buffer, at_once: bool = True) -> None:
        """Write or queue ``buffers`` after everything before them. Never blocks or raises.

        With ``at_once`` and nothing queued, they are written now (what the
        socket does not take is queued); otherwise the writer task writes
        them at its next turn, with whatever else is queued by then. An I/O
        error is left for the writer task to meet and report, so that the
        connection is never torn down under a caller about to park.
        """
        if self.closed:
            return
        if at_once and self.fd is not None and not (self._queue or self.corked):
            try:
                sent = os.write(self.fd, buffers[0]) if len(buffers) == 1 else os.writev(self.fd, buffers)
            except OSError:  # BlockingIOError, or a failure the writer will see again
                sent = 0
            for data in buffers:
                if sent >= len(data):
                    sent -= len(data)
                    continue
                self._queue.append(_kept(memoryview(data)[sent:] if sent else data))
                self._queued += len(data) - sent
                sent = 0
            if not self._queue:
                return
        else:
            for data in buffers:
                self._queue.append(_kept(data))
                self._queued += len(data)
        if self.queue_size > self._max_queue:
            self._on_overflow(self.queue_size)
        if not self.corked:
            self._writer_lot.unpark_all()

    def uncork(self) -> None:
        """Send what was queued while corked, in one write if possible."""
        self.corked = False
        if self._queue and not self.closed:
            self._write_queued_now()

    def _write_queued_now(self) -> None:
        """Write as much of the queue as the socket takes without waiting; the writer does the rest."""
        if self.fd is not None:
            try:
                self._consume(os.writev(self.fd, self._take_buffers()))
            except OSError:
                pass  # the writer meets it again and reports it
        if self._queue:
            self._writer_lot.unpark_all()

    def _take_buffers(self) -> list[Buffer]:
        queue = self._queue
        if len(queue) <= MAX_BUFFERS:
            return list(queue)
        return [queue[index] for index in range(MAX_BUFFERS)]

    def _consume(self, sent: int) -> None:
        """Drop ``sent`` written bytes from the front of the queue."""
        queue = self._queue
        self._queued -= sent
        while sent:
            size = len(queue[0])
            if size <= sent:
                queue.popleft()
                sent -= size
            else:
                queue[0] = memoryview(queue[0])[sent:]
                sent = 0

    async def wait_for_room(self) -> None:
        """Wait while more than ``SEND_HIGH_WATER`` bytes are queued (or until closed)."""
        while self.queue_size > SEND_HIGH_WATER and not self.closed:
            await self._room_lot.park()

    async def write_loop(self) -> None:
        """Drain the queue forever; raises the stream's error if writing fails."""
        while True:
            while not self._queue:
                await self._writer_lot.park()
            if self.fd is not None:
                # What is not written yet stays at the head of the queue.
                try:
                    self._consume(os.writev(self.fd, self._take_buffers()))
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.fd)
            else:
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                self._unwritten = len(data)
                await self.stream.send_all(data)
                self._unwritten = 0
            if self._room_lot and self.queue_size <= SEND_HIGH_WATER:
                self._room_lot.unpark_all()

    async def read_loop(self, process: Callable[[Buffer], None],
                        direct_read_size: Callable[[], int],
                        splice_fd: Callable[[], int | None],
                        process_spliced: Callable[[int], None]) -> None:
        """Hand every chunk read to ``process``; return at end of stream.

        On a socket, reads go into one buffer, reused: ``process`` gets a view
        of it, valid until it returns (no allocation per read). While
        ``direct_read_size()`` says that bytes of a large payload are coming,
        they are read on their own instead, as bytes ``process`` may keep,
        or, if ``splice_fd()`` names a pipe, spliced into it (no copy through
        user space; ``process_spliced`` is told how many bytes). The pipe is
        never waited for: what it does not take is read as bytes.
        """
        if self.fd is None:
            while received := await self.stream.receive_some(READ_SIZE):
                # A bytearray (from an in-memory stream) goes as a view, as our own buffer does.
                process(received if type(received) is bytes else memoryview(received))
            return
        fd = self.fd
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        wait_readable = trio.lowlevel.wait_readable
        more = False  # the last read got all it asked for: the peer may have more queued
        while not self.closed:
            if more:
                await trio.lowlevel.checkpoint()  # read on, letting other tasks run first
            else:
                await wait_readable(fd)
            wanted = direct_read_size()
            try:
                if wanted:
                    wanted = min(wanted, MAX_DIRECT_READ)
                    pipe = splice_fd()
                    if pipe is not None:
                        try:
                            size = os.splice(fd, pipe, wanted, flags=SPLICE_FLAGS)
                        except BlockingIOError:  # nothing to read, or the pipe is full
                            size = -1
                        if size > 0:
                            process_spliced(size)
                            more = size == wanted
                            continue
                        if size == 0:
                            return
                    data: Buffer = os.read(fd, wanted)
                    size = len(data)
                else:
                    wanted = READ_SIZE
                    size = os.readv(fd, [buffer])
                    data = view[:size]
            except BlockingIOError:
                more = False
                continue
            if not size:
                return
            process(data)
            more = size == wanted

    def close(self) -> None:
        """Accept no more writes; wake the tasks waiting on the queue."""
        self.closed = True
        self._writer_lot.unpark_all()
        self._room_lot.unpark_all()

    async def send_last_words(self, last: bytes) -> None:
        """Best effort, bounded in time: flush the queue and then ``last``."""
        if self._unwritten:
            return  # the writer was cut off in the middle of a send_all: the stream is unusable
        data = b"".join(self._queue) + last
        self._queue.clear()
        self._queued = 0
        if not data:
            return
        with trio.move_on_after(LAST_WORDS_TIMEOUT):
            try:
                if self.fd is not None:
                    while data:
                        try:
                            data = data[os.write(self.fd, data):]
                        except BlockingIOError:
                            await trio.lowlevel.wait_writable(self.fd)
                else:
                    await self.stream.send_all(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
