"""An rpc server in a process of its own, for the two-process tests and nothing else.

    python peer_process.py unix PATH     serve on a UNIX socket
    python peer_process.py tcp           serve on 127.0.0.1, a free port

Prints "ready <path or port>" once listening, then serves until killed; logs
to stderr. With RPC_TEST_PROTOCOL_VERSION set, it claims that protocol
version instead of its own (a peer from the future, for handshake tests).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from functools import partial

import trio

import rpc

CHUNK = 64 * 1024


@rpc.copyable("tests.process.Account")
class Account(rpc.Copyable, rpc.RemoteCopy):
    def __init__(self, owner: str, balance: int) -> None:
        self.owner = owner
        self.balance = balance


@rpc.copyable("tests.process.Overdrawn")
class Overdrawn(rpc.Copyable, rpc.RemoteCopy, Exception):
    pass


def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith("Vm"))
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


class Peer(rpc.Referenceable):
    def __init__(self) -> None:
        self.cancelled = 0

    def remote_echo(self, value: object) -> object:
        return value

    async def remote_call_back(self, callback: rpc.RemoteReference, value: object) -> object:
        return await callback.callRemote("notify", value)

    def remote_deposit(self, account: Account, amount: int) -> Account:
        if account.balance + amount < 0:
            raise Overdrawn(f"{account.owner} would be at {account.balance + amount}")
        return Account(account.owner, account.balance + amount)

    def remote_fail(self) -> None:
        raise KeyError("no such thing")

    async def remote_sleep(self, seconds: float) -> float:
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        return seconds

    def remote_cancelled(self) -> int:
        return self.cancelled

    def remote_download(self, size: int) -> rpc.StreamSender:
        async def produce() -> AsyncIterator[bytes]:
            chunk = b"d" * CHUNK
            for _ in range(size // CHUNK):
                yield chunk

        return rpc.StreamSender(produce())

    async def remote_upload(self, body: rpc.StreamReceiver) -> int:
        size = 0
        async for chunk in body:
            size += len(chunk)
        return size

    def remote_memory(self) -> dict[str, int]:
        return memory_kib()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        if sys.argv[1] == "unix":
            await nursery.start(partial(rpc.serve_unix, sys.argv[2], lambda broker: Peer()))
            where = sys.argv[2]
        else:
            listeners = await nursery.start(partial(rpc.serve_tcp, 0, lambda broker: Peer(),
                                                    host="127.0.0.1"))
            where = str(listeners[0].socket.getsockname()[1])
        print("ready", where, flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if "RPC_TEST_PROTOCOL_VERSION" in os.environ:
        rpc._wire.PROTOCOL_VERSION = int(os.environ["RPC_TEST_PROTOCOL_VERSION"])
    trio.run(main)
