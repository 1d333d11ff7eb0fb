"""Ordered writes and the read loop of one connection, over any trio stream.

All writes go through `Transport.write`, which never blocks: it writes
straight to the socket when nothing is queued (the common case, and the fast
one) and otherwise appends to one buffer that `write_loop`, run by the
writer task, drains in order. Plain socket streams are read and written
through their file descriptor: a non-blocking ``os.write`` needs no trip
through the scheduler, which halves the latency of a small call. Other
streams (TLS, in-memory) go through ``send_all`` and ``receive_some``.

Memory: the queue is bounded by the caller: producers of bulk data wait in
`wait_for_room` while more than ``SEND_HIGH_WATER`` bytes are queued; writes
that cannot wait (answers, control messages: the reader must never block, or
two brokers calling each other could deadlock) go in regardless, and past
``max_queue`` bytes ``on_overflow`` is called so that the owner can close the
connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

READ_SIZE = 256 * 1024
SEND_HIGH_WATER = 1024 * 1024
LAST_WORDS_TIMEOUT = 1.0


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
        self._out = bytearray()
        self._unwritten = 0  # bytes the writer took from _out and has not written yet
        self._writing = False
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._room_lot = trio.lowlevel.ParkingLot()

    @property
    def queue_size(self) -> int:
        """Bytes accepted for sending and not yet written to the stream."""
        return len(self._out) + self._unwritten

    def write(self, data: bytes) -> None:
        """Write or queue ``data`` after everything before it. Never blocks or raises.

        An I/O error is left for the writer task to meet and report, so that
        the connection is never torn down under a caller about to park.
        """
        if self.closed:
            return
        if self.fd is not None and not (self._out or self._writing or self.corked):
            try:
                sent = os.write(self.fd, data)
            except OSError:  # BlockingIOError, or a failure the writer will see again
                sent = 0
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._out += data
        if self.queue_size > self._max_queue:
            self._on_overflow(self.queue_size)
        if not self.corked:
            self._writer_lot.unpark_all()

    def uncork(self) -> None:
        """Send what was queued while corked, in one write if possible."""
        self.corked = False
        if self._out and not self._writing and not self.closed:
            data, self._out = self._out, bytearray()
            self.write(bytes(data))

    async def wait_for_room(self) -> None:
        """Wait while more than ``SEND_HIGH_WATER`` bytes are queued (or until closed)."""
        while self.queue_size > SEND_HIGH_WATER and not self.closed:
            await self._room_lot.park()

    async def write_loop(self) -> None:
        """Drain the queue forever; raises the stream's error if writing fails."""
        while True:
            while not self._out:
                await self._writer_lot.park()
            data = bytes(self._out)
            self._out.clear()
            self._writing = True
            self._unwritten = len(data)
            if self.fd is not None:
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(self.fd, view):]
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(self.fd)
                    self._unwritten = len(view)
            else:
                await self.stream.send_all(data)
            self._unwritten = 0
            self._writing = False
            self._room_lot.unpark_all()

    async def read_loop(self, process: Callable[[bytes], None]) -> None:
        """Hand every chunk read to ``process``; return at end of stream."""
        if self.fd is None:
            while data := await self.stream.receive_some(READ_SIZE):
                process(data)
            return
        fd = self.fd
        wait_readable = trio.lowlevel.wait_readable
        while True:
            await wait_readable(fd)
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            if not data:
                return
            process(data)
            while len(data) == READ_SIZE and not self.closed:
                # The peer may have more queued: read on, letting other tasks run first.
                await trio.lowlevel.checkpoint()
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                if not data:
                    return
                process(data)

    def close(self) -> None:
        """Accept no more writes; wake the tasks waiting on the queue."""
        self.closed = True
        self._writer_lot.unpark_all()
        self._room_lot.unpark_all()

    async def send_last_words(self, last: bytes) -> None:
        """Best effort, bounded in time: flush the queue and then ``last``."""
        data = bytes(self._out) + last
        self._out.clear()
        if not data or self._writing:
            return  # the writer was cut off mid-write: the stream is unusable
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
