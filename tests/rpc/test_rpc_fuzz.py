"""Fuzz targets for the frame and message decoder (hypothesis).

Whatever the peer sends, `Protocol.receive_data` either returns events or
raises `ProtocolError`: no other exception escapes, and nothing the peer
sends is trusted beyond the checks.
"""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rpc
from rpc import _wire as wire
from rpc._protocol import Event, Protocol

FUZZ_SETTINGS = settings(max_examples=300, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


class Target(rpc.Referenceable):
    def remote_x(self) -> None:
        pass


def fresh_protocol() -> Protocol:
    """A server-side protocol that has completed its handshake."""
    protocol = Protocol(wire.Limits(max_frame=64 * 1024), root=Target())
    peer = Protocol(wire.Limits())
    protocol.receive_data(peer.hello())
    return protocol


def feed(protocol: Protocol, data: bytes, cuts: list[int]) -> None:
    try:
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            events = protocol.receive_data(data[start:end])
            assert all(isinstance(event, Event) for event in events)
    except rpc.ProtocolError:
        pass


@FUZZ_SETTINGS
@given(st.binary(max_size=2048), st.lists(st.integers(0, 2048), max_size=4))
def test_random_bytes_after_the_hello(data: bytes, cuts: list[int]) -> None:
    feed(fresh_protocol(), data, sorted(cut for cut in cuts if cut <= len(data)))


@FUZZ_SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_instead_of_the_hello(data: bytes) -> None:
    feed(Protocol(wire.Limits()), data, [])


ext_types = st.builds(
    msgpack.ExtType,
    st.sampled_from([wire.EXT_REMOTE, wire.EXT_YOURS, wire.EXT_COPY, wire.EXT_STREAM, 0, 5, 127]),
    st.one_of(st.binary(max_size=12), st.just(struct.pack(">Q", 0)), st.just(struct.pack(">Q", 1)),
              st.just(msgpack.packb(["tests.fuzz.unknown", {}]))),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=20), st.binary(max_size=20), ext_types),
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=5), children, max_size=5)),
    max_leaves=20,
)


@FUZZ_SETTINGS
@given(st.integers(-2, 12), st.lists(values, max_size=7))
def test_well_framed_messages_of_any_shape(message_type: int, fields: list) -> None:
    payload = msgpack.packb([message_type, *fields], use_bin_type=True)
    feed(fresh_protocol(), struct.pack(">I", len(payload)) + payload, [])


plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
              st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=5), children, max_size=5)),
    max_leaves=30,
)


@FUZZ_SETTINGS
@given(plain)
def test_plain_values_round_trip(value: object) -> None:
    caller, callee = Protocol(wire.Limits()), Protocol(wire.Limits(), root=Target())
    callee.receive_data(caller.hello())
    caller.receive_data(callee.hello())
    [call] = callee.receive_data(caller.call(0, "x", [value], {})[1])
    assert call.args == [value]


@FUZZ_SETTINGS
@given(st.integers(0, 2**64 - 1), st.binary(max_size=70_000), st.booleans(),
       st.binary(max_size=3))
def test_stream_data_fast_path_agrees_with_msgpack(stream_id: int, data: bytes, end: bool,
                                                   junk: bytes) -> None:
    from rpc._wire import parse_stream_data

    payload = msgpack.packb([wire.STREAM_DATA, stream_id, data, end], use_bin_type=True)
    assert parse_stream_data(payload) == [wire.STREAM_DATA, stream_id, data, end]
    # Anything else starting like a STREAM_DATA is left to msgpack (None) or agrees with it.
    mangled = payload[:-1] + junk
    parsed = parse_stream_data(mangled)
    if parsed is not None:
        assert parsed == msgpack.unpackb(mangled)


def feed_through_one_buffer(decoder: wire.FrameDecoder, data: bytes, cuts: list[int]) -> list:
    """Feed ``data`` cut at ``cuts`` as a reader does: each read is a view of one
    buffer that the next read overwrites, except that bytes of a large payload
    are read on their own (as ``Transport.read_loop`` does) when the decoder
    asks for them. Payloads are copied as soon as they come out."""
    buffer = bytearray(len(data) + 1)
    out: list = []
    position = 0
    for cut in [*cuts, len(data)]:
        while position < cut:
            direct = decoder.direct_read_size()
            if direct:
                size = min(direct, cut - position)
                pieces = decoder.feed(data[position : position + size])
            else:
                size = cut - position
                buffer[:size] = data[position:cut]
                pieces = decoder.feed(memoryview(buffer)[:size])
            out += [piece if type(piece) is list else bytes(piece) for piece in pieces]
            buffer[:] = b"\xee" * len(buffer)  # the next read overwrites what was read
            position += size
    return out


stream_messages = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.integers(0, 2**32), st.binary(max_size=300)),
        st.tuples(st.just("data"), st.integers(1, 2**64 - 1),
                  # large payloads (and a few just too small to be handed on in pieces), from a short pattern
                  st.builds(lambda pattern, size: (pattern * size)[:size], st.binary(min_size=1, max_size=8),
                            st.integers(wire.LARGE_DATA - 10, wire.LARGE_DATA + 3000)),
                  st.booleans()),
    ),
    min_size=1, max_size=4,
)


def normalized(messages: list) -> list:
    """Messages with stream data as runs of bytes per stream (however they were cut) and ends."""
    out: list = []
    for message in messages:
        if message[0] != wire.STREAM_DATA:
            out.append(message)
            continue
        _, stream_id, data, end = message
        if data:
            if out and out[-1][0] == "data" and out[-1][1] == stream_id:
                out[-1][2] += data
            else:
                out.append(["data", stream_id, bytes(data)])
        if end:
            out.append(["end", stream_id])
    return out


@FUZZ_SETTINGS
@given(stream_messages, st.lists(st.integers(0, 3 * (wire.LARGE_DATA + 3300)), max_size=6))
def test_large_stream_data_comes_in_pieces_that_add_up(messages: list, cuts: list[int]) -> None:
    expected = []
    for message in messages:
        if message[0] == "call":
            expected.append([wire.CALL, message[1], 0, "x", [message[2]], {}])
        else:
            expected.append([wire.STREAM_DATA, *message[1:]])
    data = b"".join(wire.frame(msgpack.packb(message)) for message in expected)
    decoder = wire.FrameDecoder(1 << 30)
    decoder.feed(wire.frame(msgpack.packb(wire.Limits().hello(False))))  # past the hello
    pieces = feed_through_one_buffer(decoder, data, sorted(cut for cut in cuts if cut <= len(data)))
    got = [piece if type(piece) is list else msgpack.unpackb(piece) for piece in pieces]
    assert normalized(got) == normalized(expected)
    assert decoder.buffered == 0 and decoder.direct_read_size() == 0


def test_large_stream_data_with_a_bad_end_flag_is_a_protocol_error() -> None:
    decoder = wire.FrameDecoder(1 << 30)
    decoder.feed(wire.frame(msgpack.packb(wire.Limits().hello(False))))
    frame = bytearray(wire.frame(msgpack.packb([wire.STREAM_DATA, 3, b"d" * wire.LARGE_DATA, False])))
    frame[-1] = 0xC0  # nil instead of a bool
    pieces = decoder.feed(bytes(frame[:100])) + decoder.feed(bytes(frame[100:]))
    assert b"".join(piece[2] for piece in pieces) == b"d" * wire.LARGE_DATA  # what came before it
    with pytest.raises(rpc.ProtocolError, match="malformed STREAM_DATA"):
        decoder.feed(b"")
