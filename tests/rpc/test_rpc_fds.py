"""Open files passed over UNIX sockets (`rpc.FileDescriptor`, ext type FD).

Brokers over real socketpairs and a real `serve_unix` server; a raw peer
passes descriptors no broker would. Every test counts this process's open
descriptors: none may be left behind, whoever misbehaves.
"""

from __future__ import annotations

import array
import gc
import logging
import os
import socket
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

import rpc
from rpc import _wire as wire
from tests.rpc.rpc_testing import RawPeer, broker_pair, frame_of
from tests.support.polling import wait_until

ACCEPTS = rpc.Limits(max_fds=4)


def open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class Files(rpc.Referenceable):
    """Opens the files it is asked for and passes them."""

    def remote_open(self, *paths: str) -> list[rpc.FileDescriptor]:
        return [rpc.FileDescriptor(os.open(path, os.O_RDONLY)) for path in paths]

    async def remote_open_later(self, path: str, delay: float) -> dict[str, Any]:
        await trio.sleep(delay)
        return {"file": rpc.FileDescriptor(os.open(path, os.O_RDONLY)), "path": path}

    def remote_length(self, file: rpc.FileDescriptor) -> int:
        with file:
            return os.fstat(file.fileno()).st_size


def files(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for index in range(count):
        path = tmp_path / f"f{index}"
        path.write_bytes(b"content of file %d\n" % index * (index + 1))
        paths.append(str(path))
    return paths


def content(file: rpc.FileDescriptor) -> bytes:
    with file:
        return os.pread(file.fileno(), 1 << 20, 0)


async def test_files_passed_in_answers_read_as_the_sender_opened_them(tmp_path: Path) -> None:
    paths = files(tmp_path, 3)
    before = open_fds()
    async with broker_pair(None, Files(), limits=ACCEPTS) as (client, _server):
        root = await client.getRootObject()
        received = await root.callRemote("open", *paths)
        assert [content(file) for file in received] == [Path(path).read_bytes() for path in paths]
        assert all(file.closed for file in received)
    assert open_fds() == before


async def test_many_messages_in_flight_each_get_their_own_files(tmp_path: Path) -> None:
    # Concurrent answers are coalesced into shared writes: each message's
    # descriptors must still go with that message and no other.
    paths = files(tmp_path, 40)
    before = open_fds()
    results: dict[str, bytes] = {}
    async with broker_pair(None, Files(), limits=ACCEPTS) as (client, _server):
        root = await client.getRootObject()

        async def fetch(path: str, index: int) -> None:
            answer = await root.callRemote("open_later", path, (index % 4) * 0.001)
            results[answer["path"]] = content(answer["file"])

        async with trio.open_nursery() as nursery:
            for index, path in enumerate(paths):
                nursery.start_soon(fetch, path, index)
    assert results == {path: Path(path).read_bytes() for path in paths}
    assert open_fds() == before


async def test_a_file_goes_in_a_call_too(tmp_path: Path) -> None:
    (path,) = files(tmp_path, 1)
    before = open_fds()
    async with broker_pair(None, Files(), limits=ACCEPTS) as (client, _server):
        root = await client.getRootObject()
        file = rpc.FileDescriptor(os.open(path, os.O_RDONLY))
        assert await root.callRemote("length", file) == os.path.getsize(path)
        assert file.closed  # given away with the call
    assert open_fds() == before


async def test_a_peer_that_accepts_no_files_is_refused_locally(tmp_path: Path) -> None:
    (path,) = files(tmp_path, 1)
    async with broker_pair(None, Files()) as (client, _server):  # default limits: max_fds 0
        assert client.peer_limits is not None and client.peer_limits.max_fds == 0
        root = await client.getRootObject()
        file = rpc.FileDescriptor(os.open(path, os.O_RDONLY))
        with pytest.raises(rpc.LimitExceeded, match="at most 0 file descriptors"):
            await root.callRemote("length", file)
        assert not file.closed  # still the caller's
        file.close()
        with pytest.raises(rpc.RemoteError, match="LimitExceeded"):
            await root.callRemote("open", path)  # the answer could not go: the call fails
        assert await root.callRemote("open") == []  # the connection serves on


async def test_more_files_than_the_peer_accepts_per_message(tmp_path: Path) -> None:
    paths = files(tmp_path, 5)
    async with broker_pair(None, Files(), limits=ACCEPTS) as (client, _server):
        root = await client.getRootObject()
        with pytest.raises(rpc.RemoteError, match="at most 4 file descriptors per message"):
            await root.callRemote("open", *paths)
        assert len(await root.callRemote("open", *paths[:4])) == 4


async def test_files_cross_only_unix_sockets(tmp_path: Path) -> None:
    (path,) = files(tmp_path, 1)
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        async def serve() -> None:
            async with rpc.Broker(right, Files(), limits=ACCEPTS) as broker:
                await broker.wait_closed()
        nursery.start_soon(serve)
        async with rpc.Broker(left, limits=ACCEPTS) as client:
            assert client.peer_limits is not None and client.peer_limits.max_fds == 0  # announced none
            root = await client.getRootObject()
            with pytest.raises(rpc.RemoteError, match="only connections over UNIX sockets"):
                await root.callRemote("open", path)
        nursery.cancel_scope.cancel()


def test_a_file_descriptor_owns_its_descriptor(tmp_path: Path) -> None:
    (path,) = files(tmp_path, 1)
    before = open_fds()
    rpc.FileDescriptor(os.open(path, os.O_RDONLY))  # dropped at once: closed
    assert open_fds() == before
    file = rpc.FileDescriptor(os.open(path, os.O_RDONLY))
    fd = file.detach()
    with pytest.raises(ValueError, match="closed or given away"):
        file.fileno()
    os.close(fd)
    with pytest.raises(ValueError):
        rpc.FileDescriptor(-1)


def test_hello_max_fds_is_checked() -> None:
    message = wire.Limits().hello(False)
    assert wire.parse_hello(message).max_fds == 0
    del message[2]["max_fds"]  # a peer of before: accepts none
    assert wire.parse_hello(message).max_fds == 0
    for bad in (-1, 254, "4", 1.0):
        message[2]["max_fds"] = bad
        with pytest.raises(rpc.HandshakeError, match="max_fds"):
            wire.parse_hello(message)
    with pytest.raises(ValueError):
        rpc.Limits(max_fds=254)


# -- a raw peer passing descriptors no broker would -------------------------------


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> str:
    path = str(tmp_path / "rpc.sock")
    await nursery.start(partial(rpc.serve_unix, path, lambda broker: Files(), limits=rpc.Limits(max_fds=2)))
    return path


async def passing(path: str, data: bytes, files: list[str]) -> RawPeer:
    """A raw peer that sends ``data`` with descriptors of ``files`` (its own, closed once sent)."""
    peer = await RawPeer.connect(path)
    await trio.sleep(0.01)  # the hello read on its own: the server can say goodbye
    fds = [os.open(name, os.O_RDONLY) for name in files]
    try:
        with socket.socket(fileno=os.dup(peer.stream.socket.fileno())) as sock:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
    finally:
        for fd in fds:
            os.close(fd)
    return peer


def length_call(payload: bytes = b"") -> bytes:
    """Call 1: ``length`` of one FD value (with ``payload``, which a well-formed one lacks)."""
    return frame_of([wire.CALL, 1, 0, "length", [msgpack.ExtType(wire.EXT_FD, payload)], {}])


async def assert_closed_with(peer: RawPeer, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    await peer.read_until_closed()
    assert reason in (peer.goodbye_reason() or "")
    assert any(reason in record.getMessage() and record.levelno >= logging.WARNING for record in caplog.records)


async def test_unclaimed_files_beyond_the_limit_close_the_connection(
        server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = open_fds()
    peer = await passing(server, frame_of([wire.CANCEL, 1]), files(tmp_path, 3))
    await assert_closed_with(peer, "more file descriptors than the 2", caplog)
    await wait_until(lambda: open_fds() == before)


async def test_files_no_message_claims_are_closed_with_the_connection(
        server: str, tmp_path: Path) -> None:
    before = open_fds()
    peer = await passing(server, frame_of([wire.CANCEL, 1]), files(tmp_path, 1))
    await trio.sleep(0.05)
    assert open_fds() > before  # the server holds the one it received, and the connection
    await peer.aclose()
    await wait_until(lambda: open_fds() == before)


async def test_a_file_value_without_a_file(server: str, caplog: pytest.LogCaptureFixture) -> None:
    peer = await RawPeer.connect(server)
    await peer.send(length_call())
    await assert_closed_with(peer, "no descriptor came with the message", caplog)


async def test_a_file_value_with_a_payload(server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = open_fds()
    peer = await passing(server, length_call(b"x"), files(tmp_path, 1))
    await assert_closed_with(peer, "payload is 1 bytes, not 0", caplog)
    await wait_until(lambda: open_fds() == before)


async def test_a_file_passed_by_a_raw_peer_is_used_and_closed(server: str, tmp_path: Path) -> None:
    (path,) = files(tmp_path, 1)
    before = open_fds()
    peer = await passing(server, length_call(), [path])
    with trio.fail_after(5):
        while not any(isinstance(m, list) and m[:2] == [wire.ANSWER, 1] for m in peer.frames):
            data = await peer.stream.receive_some(65536)
            assert data
            for payload in peer._decoder.feed(data):
                peer.frames.append(msgpack.unpackb(payload, raw=False, strict_map_key=False))
    answer = next(m for m in peer.frames if isinstance(m, list) and m[:2] == [wire.ANSWER, 1])
    assert answer[2] == os.path.getsize(path)
    await peer.aclose()
    await wait_until(lambda: open_fds() == before)
