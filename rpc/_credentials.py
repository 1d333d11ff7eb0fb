"""Who is on the other end of a UNIX socket (``SO_PEERCRED``)."""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

import trio

_UCRED = struct.Struct("3i")


class PeerCredentials(NamedTuple):
    """The peer process of a UNIX socket, as the kernel saw it at connect time."""

    pid: int
    uid: int
    gid: int


def socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket under ``stream`` (through TLS layers), or None."""
    while True:
        if isinstance(stream, trio.SocketStream):
            return stream.socket
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return None
        stream = inner


def peer_credentials(sock: trio.socket.SocketType) -> PeerCredentials | None:
    """``SO_PEERCRED`` of a connected UNIX socket; None for other sockets.

    Only on platforms that have ``SO_PEERCRED`` (Linux); None elsewhere.
    """
    if sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return PeerCredentials(*_UCRED.unpack(data))


def peer_credentials_of(stream: trio.abc.Stream) -> PeerCredentials | None:
    """``SO_PEERCRED`` of the UNIX socket under ``stream``, before any broker is
    made on it (to refuse a peer without a word); None for other streams."""
    sock = socket_of(stream)
    return None if sock is None else peer_credentials(sock)
