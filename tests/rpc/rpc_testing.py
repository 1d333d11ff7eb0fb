"""Helpers for the rpc tests: connected broker pairs and a raw, misbehaving peer."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import trio

import rpc
from rpc import _wire as wire


@contextlib.asynccontextmanager
async def broker_pair(root_a: Any = None, root_b: Any = None,
                      **options: Any) -> AsyncIterator[tuple[rpc.Broker, rpc.Broker]]:
    """Two brokers over a real UNIX socketpair; ``a`` offers ``root_a``, ``b`` offers ``root_b``."""
    left, right = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    async with trio.open_nursery() as nursery:
        b_ready = trio.Event()
        b_holder: list[rpc.Broker] = []

        async def run_b() -> None:
            async with rpc.Broker(trio.SocketStream(right), root_b, **options) as broker_b:
                b_holder.append(broker_b)
                b_ready.set()
                await broker_b.wait_closed()

        nursery.start_soon(run_b)
        async with rpc.Broker(trio.SocketStream(left), root_a, **options) as broker_a:
            await b_ready.wait()
            yield broker_a, b_holder[0]
        nursery.cancel_scope.cancel()


def hello(**overrides: Any) -> bytes:
    """A hello frame as a well-behaved peer would send it."""
    message = wire.Limits().hello(has_root=False)
    message[2].update(overrides)
    return wire.frame(msgpack.packb(message))


def frame_of(message: Any) -> bytes:
    return wire.frame(msgpack.packb(message, use_bin_type=True))


class RawPeer:
    """A client speaking raw bytes to a server, to send what no broker would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._decoder = wire.FrameDecoder(1 << 30)
        self.frames: list[Any] = []

    @classmethod
    async def connect(cls, path: str, *, send_hello: bool = True) -> RawPeer:
        peer = cls(await trio.open_unix_socket(path))
        if send_hello:
            await peer.send(hello())
        return peer

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_message(self, message: Any) -> None:
        await self.send(frame_of(message))

    async def read_until_closed(self, timeout: float = 5.0) -> list[Any]:
        """Read frames until the server closes; return them decoded (ext types raw)."""
        with trio.fail_after(timeout):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                for payload in self._decoder.feed(data):
                    self.frames.append(msgpack.unpackb(payload, raw=False, strict_map_key=False))
        await self.stream.aclose()
        return self.frames

    def goodbye_reason(self) -> str | None:
        for message in self.frames:
            if isinstance(message, list) and message and message[0] == wire.GOODBYE:
                return message[1]
        return None

    async def aclose(self) -> None:
        await self.stream.aclose()


def pack_id(ident: int) -> bytes:
    return struct.pack(">Q", ident)
