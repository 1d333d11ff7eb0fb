"""Open files passed between processes: `FileDescriptor`, and SCM_RIGHTS.

A `FileDescriptor` is a value like any other (docs/protocol.md, ext type
FD): it crosses a connection over a UNIX socket whose receiver announced
``max_fds`` (see `rpc.Limits`), as ancillary data of the write that starts
the message carrying it. The receiver gets its own descriptor of the same
open file, as if it had opened it itself; what it may do with it is what the
sender's open allowed, nothing more.

Ownership is explicit because a descriptor is a scarce resource that a
garbage collector frees late: a `FileDescriptor` owns its descriptor until
it is closed, detached, or sent (the connection takes it when the message is
encoded and closes it once written, or when the connection ends unwritten);
one dropped while still owning its descriptor closes it.
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Iterable
from types import TracebackType

FD_SIZE = array.array("i").itemsize


class FileDescriptor:
    """An open file descriptor to send, or one received; see the module documentation.

    ``FileDescriptor(fd)`` takes ownership of ``fd``: give it a descriptor of
    your own (``os.dup(fd)`` to keep using yours). Use it as a context
    manager, or call `close`, when done with a received one.
    """

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = -1  # so that __del__ finds nothing to close if we refuse ``fd``
        if type(fd) is not int or fd < 0:
            raise ValueError(f"not a file descriptor: {fd!r}")
        self._fd = fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The descriptor, still owned by this object; ValueError once closed or given away."""
        if self._fd < 0:
            raise ValueError("the file descriptor was closed or given away")
        return self._fd

    def detach(self) -> int:
        """Give up ownership: the descriptor is the caller's to close."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> FileDescriptor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<rpc.FileDescriptor {self._fd if self._fd >= 0 else 'closed'}>"


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
    """The ancillary data of a ``sendmsg`` passing ``fds``."""
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in the ancillary data ``recvmsg`` returned (they are ours to close)."""
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % FD_SIZE])
    return list(fds)


def ancillary_space(max_fds: int) -> int:
    """Room for the ancillary data of one read passing up to ``max_fds`` descriptors
    (the kernel ends a read after the bytes that carried descriptors)."""
    return socket.CMSG_SPACE(max_fds * FD_SIZE)
