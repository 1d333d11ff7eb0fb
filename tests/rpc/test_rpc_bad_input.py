"""Bad input: one test per row of the issue's table.

Each test talks raw bytes to a real `serve_unix` server, checks that the bad
connection ends (or the one call fails) with a clear reason, in the goodbye
the server sends and in its log, and that a well-behaved client connecting
afterwards is served as if nothing happened.
"""

from __future__ import annotations

import logging
import struct
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

import rpc
from rpc import _wire as wire
from tests.rpc.rpc_testing import RawPeer, frame_of, hello, pack_id
from tests.support.polling import wait_until


class Service(rpc.Referenceable):
    def remote_echo(self, value: Any) -> Any:
        return value

    async def remote_sleep(self, seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    def remote_blob(self, size: int) -> bytes:
        return b"b" * size


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> str:
    path = str(tmp_path / "rpc.sock")
    limits = rpc.Limits(max_calls=4, max_queued_calls=8, max_frame=64 * 1024,
                        max_send_queue=256 * 1024)
    await nursery.start(partial(rpc.serve_unix, path, lambda broker: Service(), limits=limits))
    return path


async def assert_server_still_serves(path: str) -> None:
    async with rpc.connect_unix(path) as broker:
        root = await broker.getRootObject()
        assert await root.callRemote("echo", [1, b"ok"]) == [1, b"ok"]


async def closed_with(path: str, data: bytes, reason: str,
                      caplog: pytest.LogCaptureFixture, *, handshake: bool = True) -> None:
    """Send ``data`` after the hello; the server must say goodbye with ``reason`` and log it."""
    peer = await RawPeer.connect(path, send_hello=handshake)
    await peer.send(data)
    await peer.read_until_closed()
    if handshake:
        assert reason in (peer.goodbye_reason() or "")
    assert any(reason in record.getMessage() and record.levelno >= logging.WARNING
               for record in caplog.records), [r.getMessage() for r in caplog.records]
    await assert_server_still_serves(path)


async def test_silent_peer_is_dropped_after_the_handshake_timeout(
        nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "slow.sock")
    await nursery.start(partial(rpc.serve_unix, path, lambda broker: Service(),
                                handshake_timeout=0.2))
    peer = await RawPeer.connect(path, send_hello=False)
    frames = await peer.read_until_closed()
    assert frames and frames[0][0] == wire.PROTOCOL_NAME  # its hello, then nothing
    assert any("no hello from the peer within 0.2 s" in record.getMessage()
               for record in caplog.records)
    await assert_server_still_serves(path)


async def test_oversized_length_prefix(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await closed_with(server, struct.pack(">I", 2**32 - 1),
                      "frame length 4294967295 is outside [1, 65536]", caplog)


async def test_truncated_frame(server: str, caplog: pytest.LogCaptureFixture) -> None:
    peer = await RawPeer.connect(server)
    await peer.send(struct.pack(">I", 100) + b"only ten b")
    await peer.stream.send_eof() if hasattr(peer.stream, "send_eof") else None
    await peer.read_until_closed()
    assert any("in the middle of a frame (14 bytes received)" in record.getMessage()
               for record in caplog.records)
    await assert_server_still_serves(server)


async def test_garbage_instead_of_a_hello(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await closed_with(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                      "peer does not speak trioweb-rpc", caplog, handshake=False)


async def test_garbage_after_the_hello(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await closed_with(server, struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1",
                      "undecodable message", caplog)


async def test_wrong_version(server: str, caplog: pytest.LogCaptureFixture) -> None:
    bad_hello = wire.frame(msgpack.packb(["trioweb-rpc", 99, {}]))
    await closed_with(server, bad_hello, "peer speaks trioweb-rpc version 99", caplog,
                      handshake=False)


@pytest.mark.parametrize("message", [
    {"type": "call"},
    [],
    ["call", 1],
    [wire.CALL, 1, 0, "echo"],
    [wire.CALL, 1, 0, "echo", "not a list", {}],
    [wire.CALL, 1, 0, "echo", [], {b"bytes-key": 1}],
    [wire.ERROR, 1, "code", "T", "m", None, None],
])
async def test_valid_msgpack_of_the_wrong_shape(server: str, message: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    peer = await RawPeer.connect(server)
    await peer.send_message(message)
    await peer.read_until_closed()
    reason = peer.goodbye_reason()
    assert reason and ("malformed" in reason or "array starting with a type code" in reason
                       or "must be str" in reason or "unknown call id" in reason)
    await assert_server_still_serves(server)


async def test_unknown_message_type(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await closed_with(server, frame_of([99, "what"]), "unknown message type 99", caplog)


async def test_unknown_ext_type(server: str, caplog: pytest.LogCaptureFixture) -> None:
    message = [wire.CALL, 1, 0, "echo", [msgpack.ExtType(77, b"x")], {}]
    await closed_with(server, frame_of(message), "unknown ext type 77", caplog)


async def test_timestamp_ext_is_refused(server: str, caplog: pytest.LogCaptureFixture) -> None:
    message = [wire.CALL, 1, 0, "echo", [msgpack.Timestamp(0, 0)], {}]
    await closed_with(server, frame_of(message), "unknown ext type -1", caplog)


async def test_unknown_copyable_name(server: str, caplog: pytest.LogCaptureFixture) -> None:
    copy = msgpack.ExtType(wire.EXT_COPY, msgpack.packb(["subprocess.Popen", {"args": "sh"}]))
    await closed_with(server, frame_of([wire.CALL, 1, 0, "echo", [copy], {}]),
                      "unknown copyable name 'subprocess.Popen'", caplog)


async def test_deep_nesting(server: str, caplog: pytest.LogCaptureFixture) -> None:
    body = b"\x96\x00\x01\x00\xa4echo\x91" + b"\x91" * 60_000 + b"\xc0\x80"
    await closed_with(server, struct.pack(">I", len(body)) + body, "undecodable message", caplog)


@pytest.mark.parametrize("header,kind", [(b"\xdd\xff\xff\xff\xff", "array"),
                                         (b"\xdf\xff\xff\xff\xff", "map")])
async def test_huge_array_or_map_declared(server: str, header: bytes, kind: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    body = b"\x96\x00\x01\x00\xa4echo\x91" + header
    await closed_with(server, struct.pack(">I", len(body)) + body,
                      f"4294967295 exceeds max_{kind}_len(8192)", caplog)


async def test_answer_for_unknown_call_id(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await closed_with(server, frame_of([wire.ANSWER, 12345, "forged"]),
                      "answer for unknown call id 12345", caplog)


async def test_decref_of_unknown_reference(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await closed_with(server, frame_of([wire.DECREF, [4242, 1]]),
                      "decref of unknown object 4242", caplog)


async def test_reference_to_an_object_never_exported(server: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    yours = msgpack.ExtType(wire.EXT_YOURS, pack_id(31337))
    await closed_with(server, frame_of([wire.CALL, 1, 0, "echo", [yours], {}]),
                      "object 31337, which is not exported", caplog)


async def test_call_flood_beyond_the_concurrency_limit(server: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """4 calls run, 8 wait, the other 88 fail at once with TooManyCalls; the connection lives."""
    peer = await RawPeer.connect(server)
    await peer.send(b"".join(frame_of([wire.CALL, n, 0, "sleep", [0.5], {}])
                             for n in range(1, 101)))
    with trio.fail_after(10):
        answers: dict[int, Any] = {}
        while len(answers) < 100:
            data = await peer.stream.receive_some(65536)
            assert data
            for payload in peer._decoder.feed(data):
                message = msgpack.unpackb(payload)
                if message[0] in (wire.ANSWER, wire.ERROR):
                    answers[message[1]] = message
    refused = [m for m in answers.values() if m[0] == wire.ERROR]
    assert len(refused) == 88 and all(m[2] == wire.ERR_TOO_MANY_CALLS for m in refused)
    assert sum(m[0] == wire.ANSWER for m in answers.values()) == 12
    assert any("4 calls running and 8 waiting" in r.getMessage() for r in caplog.records)
    await peer.aclose()
    await assert_server_still_serves(server)


async def test_peer_that_stops_reading_is_cut_off(server: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Answers to a peer that never reads pile up only to max_send_queue + max_frame."""
    peer = await RawPeer.connect(server)
    calls = b"".join(frame_of([wire.CALL, n, 0, "blob", [60_000], {}]) for n in range(1, 200))
    await peer.send(calls)  # ~12 MB of answers owed; the server queues at most ~320 KB
    await wait_until(lambda: any("peer is not reading" in r.getMessage() for r in caplog.records), timeout=10)
    await peer.aclose()
    await assert_server_still_serves(server)


async def test_our_calls_to_a_peer_that_stops_reading_wait_instead_of_queueing(
        tmp_path: Path) -> None:
    """A broker's own calls block once a bounded amount is queued for a silent peer."""
    from rpc._transport import SEND_HIGH_WATER

    path = str(tmp_path / "silent.sock")
    listener = trio.socket.socket(trio.socket.AF_UNIX)
    await listener.bind(path)
    listener.listen()
    async with trio.open_nursery() as nursery:
        async def silent_peer() -> None:
            connection, _ = await listener.accept()
            await connection.send(hello(root=True))
            await trio.sleep_forever()

        nursery.start_soon(silent_peer)
        async with rpc.connect_unix(path) as broker:
            root = await broker.getRootObject()
            async with trio.open_nursery() as callers:
                for _ in range(100):
                    callers.start_soon(root.callRemote, "store", b"z" * 100_000)
                await wait_until(lambda: broker.send_queue_size > SEND_HIGH_WATER)
                await trio.sleep(0.2)  # the callers had time to queue more, and did not
                assert broker.send_queue_size <= SEND_HIGH_WATER + 200_000
                callers.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


async def test_cancel_arriving_with_its_call_is_not_lost(server: str) -> None:
    """CALL and CANCEL in one read: the call's task is cancelled before it starts."""
    peer = await RawPeer.connect(server)
    await peer.send(frame_of([wire.CALL, 1, 0, "sleep", [30], {}]) + frame_of([wire.CANCEL, 1]))
    with trio.fail_after(5):
        while True:
            data = await peer.stream.receive_some(65536)
            finals = [msgpack.unpackb(p) for p in peer._decoder.feed(data)]
            finals = [m for m in finals if m[0] in (wire.ANSWER, wire.ERROR)]
            if finals:
                break
    assert finals[0][:3] == [wire.ERROR, 1, wire.ERR_CANCELLED]
    await peer.aclose()
