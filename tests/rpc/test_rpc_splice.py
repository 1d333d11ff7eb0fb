"""Large stream payloads spliced into a receiver's pipe (Broker(splice_payloads=True))."""

from __future__ import annotations

import functools
import gc
import os
import resource
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import rpc
from rpc._streams import PipePool
from tests.rpc.rpc_testing import broker_pair
from tests.support.polling import wait_until

WINDOW = 1024 * 1024


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((seed + index * 7) % 251 for index in range(65521))  # a prime period: offsets show
    return (block * (size // len(block) + 1))[:size]


def open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class Producer(rpc.Referenceable):
    def __init__(self) -> None:
        self.sent = 0
        self.error: BaseException | None = None
        self.done = trio.Event()
        self.nursery: trio.Nursery | None = None

    def remote_push(self, size: int, piece: int = 1024 * 1024, abort_after: int = -1) -> rpc.StreamSender:
        sender = rpc.StreamSender()
        data = pattern(size)

        async def produce() -> None:
            try:
                for start in range(0, size, piece):
                    if 0 <= abort_after <= start:
                        sender.abort("producer gave up")
                        return
                    await sender.send_all(data[start : start + piece])
                    self.sent = start + len(data[start : start + piece])
                await sender.aclose()
            except Exception as exc:
                self.error = exc
            finally:
                self.done.set()

        self.nursery.start_soon(produce)
        return sender


@asynccontextmanager
async def pushed(size: int, **options) -> AsyncIterator[tuple[Producer, rpc.Broker, rpc.StreamReceiver]]:
    producer = Producer()
    async with broker_pair(root_b=producer, limits=rpc.Limits(stream_window=WINDOW),
                           splice_payloads=True) as (a, b):
        async with trio.open_nursery() as nursery:
            producer.nursery = nursery
            receiver = await (await a.getRootObject()).callRemote("push", size, **options)
            yield producer, b, receiver
            nursery.cancel_scope.cancel()


async def first_pipe_piece(receiver: rpc.StreamReceiver) -> rpc.PipePiece:
    while not isinstance(piece := await receiver.receive_piece(timeout=5), rpc.PipePiece):
        assert piece  # the start of a payload read with its header comes as bytes
    return piece


async def read_pieces(receiver: rpc.StreamReceiver, kinds: list[str],
                      pipes: set[int] | None = None) -> bytes:
    out = bytearray()
    while piece := await receiver.receive_piece(timeout=5):
        if isinstance(piece, rpc.PipePiece):
            kinds.append("pipe")
            if pipes is not None:
                pipes.add(piece.fd)
            size = piece.size
            while piece.size:
                out += piece.read(min(piece.size, 100_000))  # in parts: consumed as it goes
            assert size
        else:
            kinds.append("bytes")
            out += piece
    return bytes(out)


async def test_large_payloads_come_through_the_pipe_intact() -> None:
    size = 5 * 1024 * 1024 + 123
    async with pushed(size) as (producer, _, receiver):
        kinds: list[str] = []
        data = await read_pieces(receiver, kinds)
        assert data == pattern(size)
        assert kinds.count("pipe") >= 10
        assert producer.error is None


async def test_spliced_bytes_can_go_on_to_a_socket() -> None:
    size = 3 * 1024 * 1024
    left, right = socket.socketpair()
    left.setblocking(False)
    received = bytearray()
    async with pushed(size) as (_, _, receiver):
        while piece := await receiver.receive_piece(timeout=5):
            if isinstance(piece, rpc.PipePiece):
                while piece.size:
                    moved = os.splice(piece.fd, left.fileno(), piece.size)
                    piece.consumed(moved)
                    received += right.recv(1 << 20)
            else:
                left.sendall(piece)
            right.setblocking(False)
            try:
                while chunk := right.recv(1 << 20):
                    received += chunk
            except BlockingIOError:
                pass
            right.setblocking(True)
    left.close()
    received += b"".join(iter(lambda: right.recv(1 << 20), b""))
    right.close()
    assert bytes(received) == pattern(size)


async def test_a_small_pipe_takes_part_and_the_rest_comes_as_bytes_in_order() -> None:
    size = 4 * 1024 * 1024
    producer = Producer()
    async with broker_pair(root_b=producer, limits=rpc.Limits(stream_window=WINDOW),
                           splice_payloads=True) as (a, _):
        a._pipes = PipePool(4096)  # pipes of one slot: each fills at once
        async with trio.open_nursery() as nursery:
            producer.nursery = nursery
            receiver = await (await a.getRootObject()).callRemote("push", size)
            await wait_until(lambda: producer.sent >= WINDOW)
            kinds: list[str] = []
            data = await read_pieces(receiver, kinds)
            assert data == pattern(size)
            # more bytes pieces than the payloads' first reads: what the pipe refused
            assert "pipe" in kinds and kinds.count("bytes") > size // WINDOW + 2
            nursery.cancel_scope.cancel()


async def test_without_splice_payloads_everything_comes_as_bytes() -> None:
    producer = Producer()
    async with broker_pair(root_b=producer, limits=rpc.Limits(stream_window=WINDOW)) as (a, _):
        async with trio.open_nursery() as nursery:
            producer.nursery = nursery
            receiver = await (await a.getRootObject()).callRemote("push", 3 * 1024 * 1024)
            kinds: list[str] = []
            assert await read_pieces(receiver, kinds) == pattern(3 * 1024 * 1024)
            assert kinds and set(kinds) == {"bytes"}
            assert a._pipes is None
            nursery.cancel_scope.cancel()


def test_a_pool_out_of_file_descriptors_gives_no_pipe() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    pool = PipePool(WINDOW)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no fd number left
    try:
        assert pool.take() is None
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    pipe = pool.take()
    assert pipe is not None
    pool.give_back(pipe, empty=True)
    pool.close()


async def test_receive_some_reads_spliced_bytes_too() -> None:
    size = 2 * 1024 * 1024
    async with pushed(size) as (_, _, receiver):
        data = bytearray()
        while chunk := await receiver.receive_some(70_000):
            assert len(chunk) <= 70_000
            data += chunk
        assert bytes(data) == pattern(size)


async def test_credit_counts_spliced_bytes_once_moved_out_of_the_pipe() -> None:
    async with pushed(10 * 1024 * 1024) as (producer, _, receiver):
        piece = await first_pipe_piece(receiver)
        await trio.sleep(0.2)
        assert producer.sent <= WINDOW  # bytes in the pipe are not consumed yet
        kept = producer.sent
        piece.read(piece.size)
        with trio.fail_after(5):
            while producer.sent == kept:  # the rest of the first window, once moved out, is credit
                piece = await receiver.receive_piece(timeout=5)
                if isinstance(piece, rpc.PipePiece):
                    piece.read(piece.size)
        with pytest.raises(RuntimeError):  # a piece left half consumed is an error
            nxt = await receiver.receive_piece(timeout=5)
            assert isinstance(nxt, rpc.PipePiece)
            nxt.read(1)
            await receiver.receive_piece(timeout=5)
        await receiver.aclose()


async def test_abort_mid_stream_delivers_the_data_then_the_error_and_leaks_no_fd() -> None:
    before = open_fds()
    async with pushed(10 * 1024 * 1024, abort_after=1_000_000) as (_, _, receiver):
        kinds: list[str] = []
        with pytest.raises(rpc.StreamError, match="producer gave up"):
            await read_pieces(receiver, kinds)
        assert "pipe" in kinds
        assert receiver._pipe is None  # released at the error
        del receiver
    assert open_fds() == before


async def test_connection_loss_mid_payload_leaks_no_fd() -> None:
    before = open_fds()
    async with pushed(50 * 1024 * 1024) as (_, server, receiver):
        piece = await first_pipe_piece(receiver)
        await server.aclose()
        with pytest.raises(rpc.ConnectionLost):
            piece.read(piece.size)
            kinds: list[str] = []
            await read_pieces(receiver, kinds)
    async with pushed(50 * 1024 * 1024) as (_, server, receiver):
        await first_pipe_piece(receiver)
        await server.aclose()
        await receiver.aclose()  # with bytes in the pipe
        assert receiver._pipe is None
    assert open_fds() == before


async def test_pipes_are_reused_within_a_connection() -> None:
    producer = Producer()
    async with broker_pair(root_b=producer, limits=rpc.Limits(stream_window=WINDOW),
                           splice_payloads=True) as (a, b):
        async with trio.open_nursery() as nursery:
            producer.nursery = nursery
            root = await a.getRootObject()
            pipes: set[int] = set()
            for _ in range(3):
                receiver = await root.callRemote("push", 1_000_000)
                kinds: list[str] = []
                assert await read_pieces(receiver, kinds, pipes) == pattern(1_000_000)
                assert "pipe" in kinds
            assert len(pipes) == 1
            nursery.cancel_scope.cancel()


async def test_tcp_splices_and_memory_streams_do_not() -> None:
    producer = Producer()
    async with trio.open_nursery() as nursery:
        producer.nursery = nursery
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, lambda s: serve(s, producer), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with rpc.Broker(await trio.open_tcp_stream("127.0.0.1", port),
                              limits=rpc.Limits(stream_window=WINDOW), splice_payloads=True) as broker:
            receiver = await (await broker.getRootObject()).callRemote("push", 2_000_000)
            kinds: list[str] = []
            assert await read_pieces(receiver, kinds) == pattern(2_000_000)
            assert "pipe" in kinds
        left, right = trio.testing.memory_stream_pair()
        nursery.start_soon(serve, right, producer)
        async with rpc.Broker(left, limits=rpc.Limits(stream_window=WINDOW), splice_payloads=True) as broker:
            receiver = await (await broker.getRootObject()).callRemote("push", 1_000_000)
            kinds = []
            assert await read_pieces(receiver, kinds) == pattern(1_000_000)
            assert kinds and set(kinds) == {"bytes"}
        nursery.cancel_scope.cancel()


async def serve(stream: trio.abc.Stream, producer: Producer) -> None:
    async with rpc.Broker(stream, producer, limits=rpc.Limits(stream_window=WINDOW)) as broker:
        await broker.wait_closed()
