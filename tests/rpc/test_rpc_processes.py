"""Two real processes: the peer runs tests/rpc/peer_process.py under sys.executable."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import rpc
from tests.rpc.peer_process import Account, Overdrawn

# The peer's own copyable classes: registered here by the import, as the
# peer registers them when it starts.
from tests.support.polling import wait_until

PEER_SCRIPT = Path(__file__).with_name("peer_process.py")
STREAM_SIZE = 100 * 1024 * 1024
RSS_GROWTH_BOUND_KIB = 16 * 1024  # windows and queues are a few MiB; 100 MiB must not show


class Notifier(rpc.Referenceable):
    def remote_notify(self, value: Any) -> str:
        return f"notified {value}"


@contextlib.contextmanager
def peer_process(transport: str, tmp_path: Path,
                 environment: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start a peer; yield it and its address. Its log goes to ``process.log_path``."""
    name = f"peer-{len(list(tmp_path.iterdir()))}"
    argv = [sys.executable, str(PEER_SCRIPT), transport]
    if transport == "unix":
        argv.append(str(tmp_path / f"{name}.sock"))
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                   env={**os.environ, **(environment or {})})
    process.log_path = log_path
    try:
        line = process.stdout.readline()
        assert line.startswith("ready "), f"peer did not start: {line!r}"
        yield process, line.split(None, 1)[1].strip()
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(params=["unix", "tcp"])
def peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with peer_process(request.param, tmp_path) as (_process, address):
        yield request.param, address


@contextlib.asynccontextmanager
async def connect(transport: str, address: str) -> AsyncIterator[rpc.Broker]:
    if transport == "unix":
        async with rpc.connect_unix(address) as broker:
            yield broker
    else:
        async with rpc.connect_tcp("127.0.0.1", int(address)) as broker:
            yield broker


async def test_calls_callbacks_copies_and_errors(peer: tuple[str, str]) -> None:
    async with connect(*peer) as broker:
        root = await broker.getRootObject()
        assert await root.callRemote("echo", {"list": [1, b"x"]}) == {"list": [1, b"x"]}
        assert await root.callRemote("call_back", Notifier(), 7) == "notified 7"
        account = await root.callRemote("deposit", Account("ann", 10), 5)
        assert type(account) is Account and (account.owner, account.balance) == ("ann", 15)
        with pytest.raises(Overdrawn, match="ann would be at -90"):
            await root.callRemote("deposit", account, -105)
        with pytest.raises(rpc.RemoteError) as info:
            await root.callRemote("fail")
        assert info.value.remote_type == "KeyError" and info.value.remote_traceback is None
        with pytest.raises(rpc.NoSuchMethod):
            await root.callRemote("nothing")
        if peer[0] == "unix":
            assert broker.peer_credentials().uid == os.getuid()


async def test_cancellation_reaches_the_other_process(peer: tuple[str, str]) -> None:
    async with connect(*peer) as broker:
        root = await broker.getRootObject()
        with trio.move_on_after(0.2):
            await root.callRemote("sleep", 30)
        with trio.fail_after(5):
            while await root.callRemote("cancelled") != 1:  # noqa: ASYNC110  (asks the other process)
                await trio.sleep(0.01)


async def test_100_mib_each_way_in_bounded_memory(peer: tuple[str, str]) -> None:
    async with connect(*peer) as broker:
        root = await broker.getRootObject()
        # Warm up (imports, first buffers) before taking the baseline.
        await read_stream(await root.callRemote("download", 1024 * 1024))
        before = await root.callRemote("memory")
        assert await read_stream(await root.callRemote("download", STREAM_SIZE)) == STREAM_SIZE
        sender = rpc.StreamSender(produce(STREAM_SIZE))
        assert await root.callRemote("upload", sender) == STREAM_SIZE
        after = await root.callRemote("memory")
        growth = after["VmHWM"] - before["VmRSS"]
        assert growth < RSS_GROWTH_BOUND_KIB, f"peer grew by {growth} KiB"


async def read_stream(receiver: rpc.StreamReceiver) -> int:
    size = 0
    async for chunk in receiver:
        size += len(chunk)
    return size


async def produce(size: int) -> AsyncIterator[bytes]:
    chunk = b"u" * (256 * 1024)
    for _ in range(size // len(chunk)):
        yield chunk


async def test_peer_killed_mid_stream(tmp_path: Path) -> None:
    """The stream and its connection fail; a connection to another peer is unaffected."""
    with peer_process("unix", tmp_path) as (victim, victim_path), \
            peer_process("tcp", tmp_path) as (_other, other_port):
        async with connect("tcp", other_port) as survivor, connect("unix", victim_path) as doomed:
            receiver = await (await doomed.getRootObject()).callRemote("download", STREAM_SIZE)
            assert await receiver.receive_some()
            victim.send_signal(signal.SIGKILL)
            with pytest.raises(rpc.ConnectionLost), trio.fail_after(10):
                while await receiver.receive_some():
                    pass
            await doomed.wait_closed()
            assert doomed.closed
            assert await (await survivor.getRootObject()).callRemote("echo", "alive") == "alive"


async def test_version_mismatch_is_a_clear_error_on_both_sides(tmp_path: Path) -> None:
    with peer_process("unix", tmp_path, {"RPC_TEST_PROTOCOL_VERSION": "2"}) as (future, path):
        with pytest.raises(rpc.HandshakeError,
                           match="peer speaks trioweb-rpc version 2, this side speaks version 1"):
            async with rpc.connect_unix(path):
                pass
        await wait_until(lambda: "this side speaks version 2" in future.log_path.read_text())
    assert "peer speaks trioweb-rpc version 1, this side speaks version 2" in (
        future.log_path.read_text())
