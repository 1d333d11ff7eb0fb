"""The narrow I/O interface under ``HTTPConnection``.

``try_receive(max_bytes)`` (None when nothing is there yet),
``receive(max_bytes, timeout)``, ``try_send(data)`` (how much went without
waiting), ``send_all(data, timeout)``,
``send_pieces(pieces, timeout)`` and ``wait_writable(timeout)`` are all the
connection needs. Timeouts bound each
wait, and cost nothing when there is no need to wait. There are two kinds:

- ``SocketTransport``, for a plain socket (TCP or UNIX). It tries the system
  call first and waits for readiness only when the socket would block, so a
  ready socket costs one syscall and no scheduler round trip, and the
  timeout's cancel scope is created only when there is something to wait
  for. This is the hot path of every request, and the reason this module
  exists: trio's stream classes add two context managers, a conflict check
  and a scheduler checkpoint to each call.
- ``StreamTransport``, for any other ``trio.abc.Stream`` (TLS): the stream's
  own methods under a deadline.

Reading the answer to something just sent (the next request after a
response, an upstream's answer after a request): the callers yield once
(``trio.lowlevel.cancel_shielded_checkpoint``) and then ``try_receive``.
A read at once would only fail, and the readiness wait after it re-arms the
socket in epoll (a system call) and takes trio's I/O-wait path, for every
exchange; after one yield, during which the other connections are served,
the bytes are there under load and the read succeeds (9 µs of a hello's 53
under ``scripts/bench hello``, docs/design-notes.md).

Both raise ``trio.BrokenResourceError`` when the peer is gone and
``trio.TooSlowError`` when the deadline passes. Neither closes the stream;
the connection does, once.
"""

from __future__ import annotations

import errno
import math
import os
import select
from collections.abc import Sequence

import trio


def readable_now(fd: int) -> bool:
    """Whether socket ``fd`` has input waiting (bytes, or a queued connection on
    a listening socket), without waiting; False once it is closed (-1)."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed
        return False


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The trio exception for an OS error on a connection: closed by us, or broken."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the connection is closed")
    return trio.BrokenResourceError(str(exc))


class SocketTransport:
    """Direct non-blocking I/O on a connected stream socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = stream.socket
        self.fd = stream.socket.fileno()

    def try_receive(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes`` if the socket has any (``b""`` at end), else None."""
        try:
            return os.read(self.fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _stream_error(exc) from exc

    async def receive(self, max_bytes: int, timeout: float, *, wait_first: bool = False) -> bytes:
        """Up to ``max_bytes``; ``b""`` at end of input.

        ``wait_first``: the caller just found nothing to read, so the first
        attempt would only fail again.
        """
        data = None if wait_first else self.try_receive(max_bytes)
        while data is None:
            if timeout == math.inf:
                await trio.lowlevel.wait_readable(self.fd)
            else:
                with trio.fail_after(timeout):
                    await trio.lowlevel.wait_readable(self.fd)
            data = self.try_receive(max_bytes)
        return data

    def try_send(self, data: bytes) -> int:
        """How many bytes of ``data`` the socket took without waiting (0 if none)."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _stream_error(exc) from exc

    async def send_all(self, data: bytes, timeout: float) -> None:
        """Send everything; ``timeout`` bounds each wait for the client to read."""
        view = memoryview(data)
        sent = 0
        total = len(data)
        while sent < total:
            try:
                sent += os.write(self.fd, view[sent:])
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _stream_error(exc) from exc
            with trio.fail_after(timeout):
                await trio.lowlevel.wait_writable(self.fd)

    async def send_pieces(self, pieces: Sequence[bytes], timeout: float) -> None:
        """Send ``pieces`` in order, gathered by ``writev`` instead of joined
        (a large body is not copied); ``timeout`` bounds each wait."""
        unsent: list[bytes | memoryview] = list(pieces)
        while unsent:
            try:
                sent = os.writev(self.fd, unsent)
            except BlockingIOError:
                with trio.fail_after(timeout):
                    await trio.lowlevel.wait_writable(self.fd)
                continue
            except OSError as exc:
                raise _stream_error(exc) from exc
            while sent >= len(unsent[0]):
                sent -= len(unsent.pop(0))
                if not unsent:
                    return
            if sent:
                unsent[0] = memoryview(unsent[0])[sent:]

    async def wait_writable(self, timeout: float) -> None:
        with trio.fail_after(timeout):
            await trio.lowlevel.wait_writable(self.fd)


class StreamTransport:
    """Any trio Stream (TLS, in-memory), under deadlines."""

    socket = None
    fd = -1

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    def try_receive(self, max_bytes: int) -> bytes | None:
        return None  # a stream has no "without waiting"; callers then use receive()

    async def receive(self, max_bytes: int, timeout: float, *, wait_first: bool = False) -> bytes:
        if timeout == math.inf:
            data = await self.stream.receive_some(max_bytes)
        else:
            with trio.fail_after(timeout):
                data = await self.stream.receive_some(max_bytes)
        return data if type(data) is bytes else bytes(data)  # a stream may give a bytearray

    def try_send(self, data: bytes) -> int:
        return 0  # a stream has no "without waiting"; callers then use send_all()

    async def send_all(self, data: bytes, timeout: float) -> None:
        with trio.fail_after(timeout):
            await self.stream.send_all(data)

    async def send_pieces(self, pieces: Sequence[bytes], timeout: float) -> None:
        await self.send_all(b"".join(pieces), timeout)

    async def wait_writable(self, timeout: float) -> None:
        with trio.fail_after(timeout):
            await self.stream.wait_send_all_might_not_block()


Transport = SocketTransport | StreamTransport


def transport_for(stream: trio.abc.Stream) -> Transport:
    if isinstance(stream, trio.SocketStream):
        return SocketTransport(stream)
    return StreamTransport(stream)
