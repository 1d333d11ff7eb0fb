"""Streams: calls with an outgoing stream, answers with an incoming one, flow control."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import rpc
from tests.rpc.rpc_testing import broker_pair
from tests.support.polling import wait_until

WINDOW = 64 * 1024


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for index in range(count):
        yield bytes([index % 251]) * size


async def read_all(receiver: rpc.StreamReceiver) -> bytes:
    return b"".join([chunk async for chunk in receiver])


class Web(rpc.Referenceable):
    """Shaped like the distributed web server: request body in, head + body out."""

    def __init__(self) -> None:
        self.producer_error: BaseException | None = None
        self.producer_done = trio.Event()
        self.sent = 0

    async def remote_upload(self, head: dict, body: rpc.StreamReceiver) -> dict:
        digest = hashlib.sha256()
        size = 0
        async for chunk in body:
            digest.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": digest.hexdigest(), "head": head}

    def remote_render(self, path: str, size: int) -> dict:
        if size <= 1024:
            return {"status": 200, "headers": [["content-length", str(size)]], "body": b"s" * size}
        return {"status": 200, "headers": [], "body": rpc.StreamSender(chunks(size // 1000, 1000))}

    def remote_push(self, size: int) -> rpc.StreamReceiver:
        sender = rpc.StreamSender()

        async def produce() -> None:
            try:
                for _ in range(size // 1000):
                    await sender.send_all(b"p" * 1000)
                    self.sent += 1000
                await sender.aclose()
            except Exception as exc:
                self.producer_error = exc
            except trio.Cancelled as exc:
                self.producer_error = exc
                raise
            finally:
                self.producer_done.set()

        self.nursery.start_soon(produce)
        return sender

    def remote_whole(self, size: int) -> dict:
        return {"body": rpc.StreamSender(bytes(index % 251 for index in range(size)))}

    def remote_broken(self) -> rpc.StreamSender:
        async def failing() -> AsyncIterator[bytes]:
            yield b"partial"
            raise OSError("disk on fire")

        return rpc.StreamSender(failing())


async def test_call_with_an_outgoing_stream() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        root = await a.getRootObject()
        body = rpc.StreamSender(chunks(300, 10_000))
        result = await root.callRemote("upload", {"method": "POST"}, body)
        expected = hashlib.sha256(b"".join([c async for c in chunks(300, 10_000)])).hexdigest()
        assert result == {"size": 3_000_000, "sha256": expected, "head": {"method": "POST"}}


async def test_push_style_sender_written_by_another_task() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        root = await a.getRootObject()
        body = rpc.StreamSender()

        async def write_body() -> None:
            for _ in range(50):
                await body.send_all(b"q" * 20_000)
            await body.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_body)
            result = await root.callRemote("upload", {}, body)
        assert result["size"] == 1_000_000


async def test_answer_with_head_and_body_stream() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        root = await a.getRootObject()
        response = await root.callRemote("render", "/big", 500_000)
        assert response["status"] == 200
        assert isinstance(response["body"], rpc.StreamReceiver)
        body = await read_all(response["body"])
        assert len(body) == 500_000 and body[:1000] == b"\x00" * 1000


async def test_small_response_comes_back_in_one_message() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        root = await a.getRootObject()
        response = await root.callRemote("render", "/small", 10)
        assert response["body"] == b"s" * 10


@pytest.mark.parametrize("size", [0, 1000, WINDOW, 5 * WINDOW + 17])
async def test_content_given_whole_follows_its_message(size: int) -> None:
    """Within the window it goes out behind the answer at once; the rest as credit comes."""
    async with broker_pair(root_b=Web(), limits=rpc.Limits(stream_window=WINDOW)) as (a, b):
        root = await a.getRootObject()
        response = await root.callRemote("whole", size)
        assert await read_all(response["body"]) == bytes(index % 251 for index in range(size))
        assert await root.callRemote("render", "/small", 10) == {
            "status": 200, "headers": [["content-length", "10"]], "body": b"s" * 10}


@asynccontextmanager
async def pushed(size: int) -> AsyncIterator[tuple[Web, rpc.Broker, rpc.StreamReceiver]]:
    """A server pushing ``size`` bytes from its own task; yields it, its broker, our receiver."""
    web = Web()
    async with broker_pair(root_b=web, limits=rpc.Limits(stream_window=WINDOW)) as (a, b):
        async with trio.open_nursery() as nursery:
            web.nursery = nursery
            yield web, b, await (await a.getRootObject()).callRemote("push", size)
            with trio.fail_after(5):
                await web.producer_done.wait()


async def test_producer_waits_for_the_consumer_window() -> None:
    async with pushed(1_000_000) as (web, _, receiver):
        await wait_until(lambda: web.sent >= WINDOW - 1000)  # the producer runs until the window is full
        await trio.sleep(0.1)  # and no further
        assert web.sent <= WINDOW
        first = await receiver.receive_some()
        assert first
        data = first + await read_all(receiver)
        assert len(data) == 1_000_000
    assert web.producer_error is None


async def test_consumer_closing_early_stops_the_producer() -> None:
    async with pushed(10_000_000) as (web, _, receiver):
        assert await receiver.receive_some()
        await receiver.aclose()
    assert isinstance(web.producer_error, rpc.StreamError)
    assert web.sent < 10_000_000


async def test_dropped_receiver_stops_the_producer() -> None:
    web = Web()
    async with broker_pair(root_b=web, limits=rpc.Limits(stream_window=WINDOW)) as (a, b):
        async with trio.open_nursery() as nursery:
            web.nursery = nursery
            await (await a.getRootObject()).callRemote("push", 10_000_000)  # result dropped
            with trio.fail_after(5):
                await web.producer_done.wait()
        assert isinstance(web.producer_error, rpc.StreamError)


async def test_producer_failure_reaches_the_consumer_after_the_data() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        receiver = await (await a.getRootObject()).callRemote("broken")
        assert await receiver.receive_some() == b"partial"
        with pytest.raises(rpc.StreamError, match="OSError: disk on fire"):
            await receiver.receive_some()


async def test_connection_loss_fails_both_ends_of_a_stream() -> None:
    async with pushed(10_000_000) as (web, server_broker, receiver):
        await receiver.receive_some()
        await server_broker.aclose()
        with pytest.raises(rpc.ConnectionLost):
            while await receiver.receive_some():
                pass
    assert isinstance(web.producer_error, rpc.ConnectionLost)


async def test_a_sender_can_be_sent_only_once() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        root = await a.getRootObject()
        sender = rpc.StreamSender(chunks(1, 10))
        await root.callRemote("upload", {}, sender)
        with pytest.raises(ValueError, match="only once"):
            await root.callRemote("upload", {}, sender)


async def test_receive_some_respects_max_bytes() -> None:
    async with broker_pair(root_b=Web()) as (a, b):
        response = await (await a.getRootObject()).callRemote("render", "/", 5000)
        pieces: list[Any] = []
        while piece := await response["body"].receive_some(7):
            assert len(piece) <= 7
            pieces.append(piece)
        assert len(b"".join(pieces)) == 5000


async def test_abort_releases_a_writer_waiting_for_a_sender_never_sent() -> None:
    sender = rpc.StreamSender()
    async with trio.open_nursery() as nursery:
        outcome: list[BaseException] = []

        async def write() -> None:
            try:
                await sender.send_all(b"never sent")
            except trio.ClosedResourceError as exc:
                outcome.append(exc)

        nursery.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        sender.abort("the call failed")
    assert len(outcome) == 1


async def test_receive_with_a_timeout_waits_that_long_for_bytes_only() -> None:
    class Trickle(rpc.Referenceable):
        def __init__(self) -> None:
            self.sender = rpc.StreamSender()

        def remote_open(self) -> rpc.StreamSender:
            return self.sender

    trickle = Trickle()
    async with broker_pair(root_b=trickle) as (a, b):
        root = await a.getRootObject()
        receiver = await root.callRemote("open")
        with pytest.raises(trio.TooSlowError):
            await receiver.receive_some(timeout=0.05)  # nothing was sent
        await trickle.sender.send_all(b"late")
        with trio.fail_after(5):
            assert await receiver.receive_some(timeout=5) == b"late"
        await trickle.sender.send_all(b"here")
        await trio.testing.wait_all_tasks_blocked()
        assert await receiver.receive_some(timeout=0) == b"here"  # buffered: no wait, no timer
        await trickle.sender.aclose()
        assert await receiver.receive_some(timeout=5) == b""
