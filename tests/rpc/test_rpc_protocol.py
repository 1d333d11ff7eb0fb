"""The sans-I/O core, in memory: two Protocol objects passing bytes by hand."""

from __future__ import annotations

import gc

import msgpack
import pytest

import rpc
from rpc import _wire as wire
from rpc._protocol import Answer, Call, Cancel, Error, Protocol, StreamCredit, StreamData
from tests.rpc.rpc_testing import frame_of, pack_id


class Thing(rpc.Referenceable):
    def remote_ping(self) -> str:
        return "pong"


@rpc.copyable("tests.protocol.Point")
class Point(rpc.Copyable, rpc.RemoteCopy):
    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


def connected(limits_a: wire.Limits | None = None, limits_b: wire.Limits | None = None,
              root_b: object = None) -> tuple[Protocol, Protocol]:
    a = Protocol(limits_a or wire.Limits())
    b = Protocol(limits_b or wire.Limits(), root=root_b)
    [done_b] = b.receive_data(a.hello())
    [done_a] = a.receive_data(b.hello())
    assert done_a.peer.has_root is (root_b is not None)
    return a, b


def test_call_and_answer_round_trip() -> None:
    a, b = connected(root_b=Thing())
    call_id, data = a.call(0, "ping", [1, "two", b"three", None, 4.5], {"k": [True]})
    [call] = b.receive_data(data)
    assert isinstance(call, Call)
    assert (call.call_id, call.method, call.args, call.kwargs) == (
        call_id, "ping", [1, "two", b"three", None, 4.5], {"k": [True]})
    assert isinstance(call.target, Thing)
    [answer] = a.receive_data(b.answer(call.call_id, {"result": b"ok"}))
    assert isinstance(answer, Answer) and answer.value == {"result": b"ok"}


def test_frames_split_anywhere_decode_the_same() -> None:
    a, b = connected(root_b=Thing())
    data = b"".join(a.call(0, "ping", [index], {})[1] for index in range(5))
    events = []
    for offset in range(0, len(data), 3):
        events += b.receive_data(data[offset : offset + 3])
    assert [event.args for event in events] == [[index] for index in range(5)]


def test_version_mismatch_is_a_clear_error_on_both_sides() -> None:
    old = msgpack.packb(["trioweb-rpc", 2, {}])
    for side in (Protocol(wire.Limits()), Protocol(wire.Limits())):
        with pytest.raises(rpc.HandshakeError, match="version 2, this side speaks version 1"):
            side.receive_data(wire.frame(old))


def test_other_protocol_is_refused_at_the_handshake() -> None:
    with pytest.raises(rpc.HandshakeError, match="does not speak trioweb-rpc"):
        Protocol(wire.Limits()).receive_data(b"GET / HTTP/1.1\r\n\r\n")


def test_bad_hello_limits_are_refused() -> None:
    message = wire.Limits().hello(False)
    message[2]["max_frame"] = 10
    with pytest.raises(rpc.HandshakeError, match="max_frame"):
        Protocol(wire.Limits()).receive_data(wire.frame(msgpack.packb(message)))


def test_length_prefix_is_checked_before_the_body_arrives() -> None:
    a, b = connected()
    with pytest.raises(rpc.ProtocolError, match="frame length 4294967295"):
        b.receive_data(b"\xff\xff\xff\xff")
    a, b = connected()
    with pytest.raises(rpc.ProtocolError, match="frame length 0"):
        b.receive_data(b"\x00\x00\x00\x00")


def test_answer_for_unknown_call_id_is_a_protocol_error() -> None:
    a, b = connected()
    with pytest.raises(rpc.ProtocolError, match="answer for unknown call id 7"):
        a.receive_data(frame_of([wire.ANSWER, 7, None]))


def test_late_answer_after_cancel_is_dropped() -> None:
    a, b = connected(root_b=Thing())
    call_id, data = a.call(0, "ping", [], {})
    [call] = b.receive_data(data)
    [cancel] = b.receive_data(a.cancel(call_id))
    assert isinstance(cancel, Cancel) and cancel.call_id == call_id
    assert a.receive_data(b.answer(call_id, "late")) == []
    # The id is forgotten after its final message: a second one is an error.
    with pytest.raises(rpc.ProtocolError):
        a.receive_data(frame_of([wire.ANSWER, call_id, None]))


def test_cancel_after_the_answer_is_ignored_and_unknown_cancel_is_an_error() -> None:
    a, b = connected(root_b=Thing())
    call_id, data = a.call(0, "ping", [], {})
    b.receive_data(data)
    b.answer(call_id, 1)
    assert b.receive_data(frame_of([wire.CANCEL, call_id])) == []
    with pytest.raises(rpc.ProtocolError, match="never made"):
        b.receive_data(frame_of([wire.CANCEL, call_id + 1]))


def test_call_ids_must_increase() -> None:
    a, b = connected(root_b=Thing())
    b.receive_data(frame_of([wire.CALL, 5, 0, "ping", [], {}]))
    with pytest.raises(rpc.ProtocolError, match="does not increase"):
        b.receive_data(frame_of([wire.CALL, 5, 0, "ping", [], {}]))


def test_references_are_counted_and_released_in_a_batch() -> None:
    a, b = connected(root_b=Thing())
    things = [Thing() for _ in range(3)]
    call_id, data = a.call(0, "ping", [things, things[0]], {})
    [call] = b.receive_data(data)
    refs, again = call.args
    assert again is refs[0]  # one RemoteReference per object id
    assert len(a._exports) == 3 and a._exports[1].count == 2
    del call, refs, again
    gc.collect()
    release = b.data_to_send()
    assert release  # one DECREF message for all three
    assert a.receive_data(release) == []
    assert a._exports == {}


def test_a_send_crossing_a_release_keeps_the_object_alive() -> None:
    a, b = connected(root_b=Thing())
    thing = Thing()
    [call] = b.receive_data(a.call(0, "ping", [thing], {})[1])
    second = a.call(0, "ping", [thing], {})[1]  # on the wire while b releases
    del call
    gc.collect()
    a.receive_data(b.data_to_send())
    assert a._exports[1].count == 1
    [call] = b.receive_data(second)
    assert isinstance(call.args[0], rpc.RemoteReference)
    [answer] = a.receive_data(b.answer(call.call_id, call.args[0]))
    assert answer.value is thing


def test_reference_passed_back_is_the_original_object() -> None:
    a, b = connected(root_b=Thing())
    thing = Thing()
    call_id, data = a.call(0, "ping", [thing], {})
    [call] = b.receive_data(data)
    [answer] = a.receive_data(b.answer(call_id, call.args[0]))
    assert answer.value is thing


def test_decref_of_unknown_or_too_many_is_a_protocol_error() -> None:
    a, b = connected()
    with pytest.raises(rpc.ProtocolError, match="decref of unknown object 9"):
        a.receive_data(frame_of([wire.DECREF, [9, 1]]))
    a, b = connected(root_b=Thing())
    a.call(0, "ping", [Thing()], {})
    with pytest.raises(rpc.ProtocolError, match="more than the 1 sent"):
        a.receive_data(frame_of([wire.DECREF, [1, 2]]))


def test_imported_references_are_capped() -> None:
    a, b = connected(limits_b=wire.Limits(max_refs=2), root_b=Thing())
    with pytest.raises(rpc.LimitExceeded, match="at most 2 references"):
        a.call(0, "ping", [Thing(), Thing(), Thing()], {})
    assert a._exports == {}  # rolled back
    forged = [wire.CALL, 1, 0, "ping",
              [msgpack.ExtType(wire.EXT_REMOTE, pack_id(n)) for n in range(1, 4)], {}]
    with pytest.raises(rpc.ProtocolError, match="more than 2 live references"):
        b.receive_data(frame_of(forged))


def test_copies_cross_by_registered_name() -> None:
    a, b = connected(root_b=Thing())
    [call] = b.receive_data(a.call(0, "ping", [Point(1, 2)], {})[1])
    point = call.args[0]
    assert type(point) is Point and (point.x, point.y) == (1, 2)


def test_unregistered_class_is_refused_on_send_and_unknown_name_on_receive() -> None:
    a, b = connected(root_b=Thing())

    class Unregistered(rpc.Copyable):
        pass

    with pytest.raises(TypeError, match="cannot send"):
        a.call(0, "ping", [Unregistered()], {})
    copy = msgpack.ExtType(wire.EXT_COPY, msgpack.packb(["os.system", {"x": 1}]))
    with pytest.raises(rpc.ProtocolError, match=r"unknown copyable name 'os\.system'"):
        b.receive_data(frame_of([wire.CALL, 1, 0, "ping", [copy], {}]))


def test_copies_nested_too_deep_are_refused() -> None:
    a, b = connected(root_b=Thing())
    state: object = {"x": 0, "y": 0}
    for _ in range(40):
        state = msgpack.ExtType(wire.EXT_COPY, msgpack.packb(
            ["tests.protocol.Point", {"x": state, "y": 0}], default=lambda o: o))
    with pytest.raises(rpc.ProtocolError, match="nested deeper than 16"):
        b.receive_data(frame_of([wire.CALL, 1, 0, "ping", [state], {}]))


@pytest.mark.parametrize("ext", [
    msgpack.ExtType(42, b"12345678"),
    msgpack.ExtType(wire.EXT_REMOTE, b"short"),
    msgpack.Timestamp(1, 2),
])
def test_foreign_ext_types_are_refused(ext: object) -> None:
    a, b = connected(root_b=Thing())
    data = wire.frame(msgpack.packb([wire.CALL, 1, 0, "ping", [{"when": ext}], {}]))
    with pytest.raises(rpc.ProtocolError, match="ext type"):
        b.receive_data(data)


def test_outgoing_message_larger_than_peer_frame_fails_locally_and_rolls_back() -> None:
    a, b = connected(limits_b=wire.Limits(max_frame=8192), root_b=Thing())
    with pytest.raises(rpc.LimitExceeded, match="maximum frame of 8192"):
        a.call(0, "ping", [Thing(), b"x" * 10000], {})
    assert a._exports == {}
    call_id, data = a.call(0, "ping", [], {})  # the connection is still usable
    assert b.receive_data(data)[0].call_id == call_id


def test_stream_credit_bounds_the_producer_and_overrun_is_an_error() -> None:
    window = 64 * 1024
    a, b = connected(limits_b=wire.Limits(stream_window=window), root_b=Thing())
    sender = rpc.StreamSender()
    call_id, data = a.call(0, "ping", [sender], {})
    [call] = b.receive_data(data)
    receiver = call.args[0]
    assert isinstance(receiver, rpc.StreamReceiver) and sender.sent
    assert a.send_credit(1) == window
    [chunk] = b.receive_data(b"".join(a.stream_data(1, b"x" * window)))
    assert isinstance(chunk, StreamData) and len(chunk.data) == window
    assert a.send_credit(1) == 0
    # Credit goes back once the consumer has taken half the window, not before.
    assert b.stream_consumed(1, window // 4) is None
    credit = b.stream_consumed(1, window // 4)
    [event] = a.receive_data(credit)
    assert isinstance(event, StreamCredit) and a.send_credit(1) == window // 2
    # A producer ignoring its credit is cut off.
    with pytest.raises(rpc.ProtocolError, match="overran its credit"):
        b.receive_data(frame_of([wire.STREAM_DATA, 1, b"y" * (window // 2 + 1), False]))


def test_stopped_stream_drops_data_until_the_producer_final_message() -> None:
    a, b = connected(root_b=Thing())
    sender = rpc.StreamSender()
    [call] = b.receive_data(a.call(0, "ping", [sender], {})[1])
    in_flight = b"".join(a.stream_data(1, b"data"))
    call.args[0]._stop()
    stop = b.data_to_send()
    events = a.receive_data(stop)
    assert [type(event).__name__ for event in events] == ["StreamStopped"]
    assert b.receive_data(in_flight) == []  # dropped, not an error
    assert b.receive_data(a.data_to_send()) == []  # the producer's final ABORT
    with pytest.raises(rpc.ProtocolError, match="unknown stream 1"):
        b.receive_data(frame_of([wire.STREAM_DATA, 1, b"", True]))


def test_error_message_carries_type_and_text() -> None:
    a, b = connected(root_b=Thing())
    call_id, data = a.call(0, "ping", [], {})
    b.receive_data(data)
    [error] = a.receive_data(b.error(call_id, wire.ERR_EXCEPTION, "ValueError", "bad"))
    assert isinstance(error, Error)
    assert (error.type_name, error.message, error.traceback) == ("ValueError", "bad", None)
