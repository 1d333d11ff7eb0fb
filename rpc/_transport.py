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

Open files (`rpc.FileDescriptor`) go as SCM_RIGHTS ancillary data of the
``sendmsg`` that starts the message carrying them: the queue remembers that
message's first buffer, a write never runs past it without them, and the
write that starts with it passes them. The receiving side reads with
``recvmsg`` (only when it accepts descriptors) and hands them on before the
bytes of the same read, so they are there when their message is decoded.

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
import socket
from collections.abc import Callable

import trio

from ._fds import ancillary_space, close_all, received_fds, rights

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
        self.carries_fds = isinstance(stream, trio.SocketStream) and stream.socket.family == socket.AF_UNIX
        # For sendmsg and recvmsg with descriptors, made when first needed: the
        # socket, on a descriptor of its own.
        self._unix_socket: socket.socket | None = None
        self.corked = False  # while set, writes are queued for one `uncork`
        self.closed = False
        self._max_queue = max_queue
        self._on_overflow = on_overflow
        self._queue: collections.deque[Buffer] = collections.deque()
        self._queued = 0  # bytes in _queue
        self._unwritten = 0  # bytes taken from the queue by a send_all under way (not a socket)
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._room_lot = trio.lowlevel.ParkingLot()
        # Messages carrying descriptors, in order: (the message's first buffer, as queued; its fds).
        self._fd_messages: collections.deque[tuple[Buffer, list[int]]] = collections.deque()

    def _socket_for_fds(self) -> socket.socket:
        assert self.carries_fds and self.fd is not None  # the protocol passes descriptors only then
        if self._unix_socket is None:
            self._unix_socket = socket.socket(fileno=os.dup(self.fd))
        return self._unix_socket

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

    def write_with_fds(self, message: bytes, fds: list[int], *, at_once: bool = True) -> None:
        """Like `write`, for one whole message passing ``fds`` (which the
        transport owns from now on: they are closed once sent, or with it)."""
        if self.closed:
            close_all(fds)
            return
        self._queue.append(message)
        self._queued += len(message)
        self._fd_messages.append((message, fds))
        if at_once and not self.corked and self._queue[0] is message:
            self._write_queued_now()
        elif not self.corked:
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
                self._consume(self._send_queued())
            except OSError:
                pass  # the writer meets it again and reports it
        if self._queue:
            self._writer_lot.unpark_all()

    def _send_queued(self) -> int:
        """One write of the head of the queue to the socket; how many bytes it took.

        The write stops before the next message carrying descriptors, or
        starts with it and passes them (the kernel sends them with its first
        byte, even if it takes only part of the write).
        """
        buffers = self._take_buffers()
        if not self._fd_messages:
            return os.writev(self.fd, buffers)  # type: ignore[arg-type]  # only called with a descriptor
        first, fds = self._fd_messages[0]
        passing = buffers[0] is first
        # The next message with descriptors of its own starts the next write.
        following = self._fd_messages[1][0] if passing and len(self._fd_messages) > 1 else first
        for index in range(1 if passing else 0, len(buffers)):
            if buffers[index] is following:
                del buffers[index:]
                break
        if not passing:
            return os.writev(self.fd, buffers)  # type: ignore[arg-type]
        sent = self._socket_for_fds().sendmsg(buffers, rights(fds))
        self._fd_messages.popleft()
        close_all(fds)  # the peer has its own now
        return sent

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
                    self._consume(self._send_queued())
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
                        process_spliced: Callable[[int], None],
                        process_fds: Callable[[list[int], bool], None] | None = None,
                        max_fds: int = 0) -> None:
        """Hand every chunk read to ``process``; return at end of stream.

        On a socket, reads go into one buffer, reused: ``process`` gets a view
        of it, valid until it returns (no allocation per read). While
        ``direct_read_size()`` says that bytes of a large payload are coming,
        they are read on their own instead, as bytes ``process`` may keep,
        or, if ``splice_fd()`` names a pipe, spliced into it (no copy through
        user space; ``process_spliced`` is told how many bytes). The pipe is
        never waited for: what it does not take is read as bytes. With
        ``process_fds`` (a UNIX socket accepting up to ``max_fds`` descriptors
        a message), ordinary reads are ``recvmsg``: the descriptors that come
        go to ``process_fds`` (with whether the kernel dropped some that did
        not fit) before the bytes of the same read go to ``process``.
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
        receiving_fds = self._socket_for_fds() if process_fds is not None and max_fds else None
        room = ancillary_space(max_fds)
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
                elif receiving_fds is not None:
                    wanted = READ_SIZE
                    size, ancillary, flags, _ = receiving_fds.recvmsg_into([buffer], room, socket.MSG_CMSG_CLOEXEC)
                    if ancillary or flags & socket.MSG_CTRUNC:
                        assert process_fds is not None
                        process_fds(received_fds(ancillary), bool(flags & socket.MSG_CTRUNC))
                    data = view[:size]
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

    def release(self) -> None:
        """Once the stream is closed: close the descriptors never written, and our socket's own."""
        while self._fd_messages:
            close_all(self._fd_messages.popleft()[1])
        if self._unix_socket is not None:
            self._unix_socket.close()

    async def send_last_words(self, last: bytes) -> None:
        """Best effort, bounded in time: flush the queue and then ``last``."""
        if self._unwritten:
            return  # the writer was cut off in the middle of a send_all: the stream is unusable
        if self._fd_messages:
            # Whatever follows a message whose descriptors cannot go is dropped
            # whole: a message without the descriptors it names is a protocol error.
            first = self._fd_messages[0][0]
            while self._queue and self._queue[-1] is not first:
                self._queue.pop()
            if self._queue:
                self._queue.pop()
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
