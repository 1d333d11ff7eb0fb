"""The sans-I/O core: bytes in, events out; messages in, bytes out.

Theory of operation
-------------------

A `Protocol` is one side of one connection. It does no I/O and knows nothing
of tasks: the broker feeds it the bytes it reads (`receive_data`, which
returns events) and asks it for the bytes of each message it wants to send
(`call`, `answer`, `error`, ...). Every rule about what the peer may send is
checked here, and every violation raises `ProtocolError`, after which the
connection is finished (the broker closes it). The rules:

- Framing. Each frame is a 4-byte big-endian length and one msgpack object.
  Lengths are checked against our ``max_frame`` before the body is buffered.
  The object is decoded with explicit limits (str/bin lengths, array/map
  lengths, nesting) and only our own ext types; a timestamp ext or any other
  is refused, as is trailing data.
- Handshake. The first frame each way is a hello (name, version, limits).
  Nothing else is accepted before it; a wrong name or version is a
  `HandshakeError`. The peer's limits bound what we send: a message larger
  than its ``max_frame`` or breaking its reference or stream limits raises
  `LimitExceeded` locally, and the message is not sent.
- Calls. Each side numbers its calls 1, 2, 3, ...; an incoming CALL must
  carry a larger id than the last. Exactly one ANSWER or ERROR ends each
  call, from the callee, even after a CANCEL. An ANSWER or ERROR for a call
  we cancelled is dropped; for an id we never used or already closed it is a
  protocol error. A CANCEL for a call that already ended is ignored.
- References. An object we send by reference gets an object id (0 is the
  root) and a count of how many times we sent it. The peer keeps one
  `RemoteReference` per id and counts how many times it received it; when
  that reference is garbage collected it sends DECREF(id, count), and we
  forget the object when its count reaches zero. Because the peer only
  subtracts what it has seen, a send crossing a DECREF on the wire keeps the
  object alive. Each side holds at most ``max_refs`` imported ids; a DECREF
  naming an unknown id or more than its count is a protocol error.
- Copies. A registered name and a state; the registry decides which class
  is made. An unknown name, a failing ``setCopyableState`` or copies nested
  deeper than ``max_copy_depth`` are protocol errors.
- Streams. The producer numbers its streams 1, 2, 3, ... and may send DATA
  for a stream only after the message that carried it, and only as many
  bytes as the consumer's credit allows: the consumer's window to start
  with, plus every CREDIT since. Overrunning the credit is a protocol error.
  The producer ends a stream with DATA(end=true) or ABORT; the consumer may
  STOP it, after which it drops DATA until the producer's final message.
- Encoding is transactional: if a message cannot be encoded (unsendable
  value, limit), the references and streams it would have created are
  rolled back and nothing is sent.

Control messages (DECREF, STOP, ABORT) that arise outside a direct request
(a reference collected, a receiver dropped, a stream stopped by the peer)
are queued and returned by `data_to_send`; ``on_output`` tells the broker
there is something to flush.

The references and streams the peer sends us, and the senders we send, are
given the `rpc._connection.Connection` the protocol was made with (the
broker), and reach it directly for what needs I/O: a call, stream data,
credit. The protocol never calls it; made without one, its references are
dead and its streams carry no data, which is enough to test the rules here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from . import _wire as wire
from ._codec import ValueCodec
from ._errors import LimitExceeded, ProtocolError
from ._events import (
    Answer,
    Call,
    Cancel,
    Error,
    Event,
    Goodbye,
    HandshakeDone,
    Send,
    StreamAborted,
    StreamCredit,
    StreamData,
    StreamStopped,
)
from ._references import RemoteReference
from ._streams import MAX_CHUNK, StreamReceiver, StreamSender

if TYPE_CHECKING:
    from ._connection import Connection, StreamEnd

__all__ = [
    "Answer", "Call", "Cancel", "Error", "Event", "Goodbye", "HandshakeDone", "Protocol", "Send",
    "StreamAborted", "StreamCredit", "StreamData", "StreamStopped",
]

DECREF_BATCH = wire.MIN_ARRAY_LEN // 2  # pairs per DECREF: every peer accepts the array

Message = list[Any]  # a decoded message: its type code, then its fields


def _is_str_keyed(mapping: dict[Any, Any]) -> bool:
    return all(type(key) is str for key in mapping)


class Protocol(ValueCodec):
    """One side of one connection, without I/O. See the module's theory of operation.

    ``root`` is exported as object 0 if given. ``connection`` (the broker) is
    given to the references and streams the protocol makes or binds.
    """

    def __init__(self, limits: wire.Limits, *, root: Any = None,
                 connection: Connection | None = None) -> None:
        ValueCodec.__init__(self, limits, root, connection)
        # Largest STREAM_DATA payload the peer accepts in one frame (known from its hello).
        self.max_chunk = 0
        self._decoder = wire.FrameDecoder(limits.max_frame)
        self._handlers: dict[int, Callable[[Message], Event | None]] = {
            wire.CALL: self._on_call, wire.ANSWER: self._on_answer,
            wire.ERROR: self._on_error, wire.SEND: self._on_send,
            wire.CANCEL: self._on_cancel, wire.DECREF: self._on_decref,
            wire.STREAM_DATA: self._on_stream_data, wire.STREAM_CREDIT: self._on_stream_credit,
            wire.STREAM_ABORT: self._on_stream_abort, wire.STREAM_STOP: self._on_stream_stop,
            wire.GOODBYE: self._on_goodbye,
        }
        # Calls we make, and calls the peer makes.
        self._next_call_id = 1
        self._pending_calls: set[int] = set()
        self._cancelled_calls: set[int] = set()
        self._last_peer_call_id = 0
        self._running_calls: set[int] = set()
        # Control output waiting for `data_to_send`, encoded (besides the codec's queues).
        self._control: list[bytes] = []

    # ----------------------------------------------------------------- output

    @property
    def accepted_fds(self) -> int:
        """Descriptors this side accepts per message (0 unless a UNIX socket carries them)."""
        return self.limits.max_fds if self.carries_fds else 0

    def hello(self) -> bytes:
        """The first frame to send."""
        return wire.frame(msgpack.packb(self.limits.hello(0 in self._exports, self.accepted_fds)))

    @property
    def buffered(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return self._decoder.buffered

    def direct_read_size(self) -> int:
        """Bytes of a large stream payload still to come, best read as a chunk of
        their own: passed to `receive_data` as bytes, they reach the stream's
        receiver without a copy."""
        return self._decoder.direct_read_size()

    def splice_fd(self) -> int | None:
        """The pipe into which the large payload coming may be spliced, if its
        broker splices payloads (``splice_payloads``); else None."""
        stream = self._in_streams.get(self._decoder.data_stream())
        if stream is None:
            return None
        receiver = stream.receiver_ref()
        return receiver._splice_fd() if receiver is not None else None

    def receive_spliced(self, size: int) -> StreamReceiver | None:
        """``size`` bytes of the large payload coming were spliced into the pipe
        `splice_fd` gave; returns the receiver to tell."""
        stream_id = self._decoder.spliced(size)
        stream = self._in_streams.get(stream_id)
        if stream is None:
            return None
        stream.unacknowledged += size
        if stream.unacknowledged > self.limits.stream_window:
            raise ProtocolError(f"stream {stream_id} overran its credit")
        return stream.receiver_ref()

    def call(self, object_id: int, method: str, args: Any, kwargs: dict[str, Any]) -> tuple[int, bytes]:
        """Encode a CALL; return its call id and its bytes."""
        if type(method) is not str:
            raise TypeError(f"a method name is a str, not {type(method).__name__}")
        call_id = self._next_call_id
        data = self._encode([wire.CALL, call_id, object_id, method, args, kwargs])
        self._next_call_id = call_id + 1
        self._pending_calls.add(call_id)
        return call_id, data

    def send(self, object_id: int, method: str, args: Any, kwargs: dict[str, Any]) -> bytes:
        """Encode a one-way SEND."""
        if type(method) is not str:
            raise TypeError(f"a method name is a str, not {type(method).__name__}")
        return self._encode([wire.SEND, object_id, method, args, kwargs])

    def cancel(self, call_id: int) -> bytes | None:
        """Give up on a call: its late answer will be dropped. Bytes of the CANCEL, or None."""
        if call_id not in self._pending_calls:
            return None
        self._pending_calls.discard(call_id)
        self._cancelled_calls.add(call_id)
        return self._encode_control([wire.CANCEL, call_id])

    def answer(self, call_id: int, value: Any) -> bytes:
        """Encode the ANSWER ending an incoming call (may raise; the call stays open then)."""
        if call_id not in self._running_calls:
            raise RuntimeError(f"call {call_id} is not an open incoming call")
        data = self._encode([wire.ANSWER, call_id, value])
        self._running_calls.discard(call_id)
        return data

    def error(self, call_id: int, code: int, type_name: str, message: str,
              traceback: str | None = None, exception: Any = None) -> bytes:
        """Encode the ERROR ending an incoming call; never fails.

        If ``exception`` (a copyable exception) cannot be encoded, it is left
        out; if the message is still too large for the peer, the traceback
        goes and the message is cut.
        """
        if call_id not in self._running_calls:
            raise RuntimeError(f"call {call_id} is not an open incoming call")
        try:
            data = self._encode([wire.ERROR, call_id, code, type_name, message, traceback,
                                 exception])
        except Exception:
            try:
                data = self._encode([wire.ERROR, call_id, code, type_name, message, traceback,
                                     None])
            except Exception:
                data = self._encode([wire.ERROR, call_id, code, type_name[:200],
                                     message[:1000] + " [cut]", None, None])
        self._running_calls.discard(call_id)
        return data

    def stream_data(self, stream_id: int, data: bytes | memoryview) -> tuple[bytes | memoryview, ...]:
        """Encode DATA for one of our streams, as buffers to write in order;
        ``len(data)`` must fit its credit."""
        stream = self._out_streams[stream_id]
        if len(data) > stream.credit:
            raise RuntimeError("stream data beyond the consumer's credit")
        stream.credit -= len(data)
        return wire.stream_data_frame(stream_id, data)

    def send_credit(self, stream_id: int) -> int:
        """Bytes we may still send on one of our streams (0 if it is over)."""
        stream = self._out_streams.get(stream_id)
        return stream.credit if stream is not None else 0

    def finish_stream(self, stream_id: int, end: StreamEnd, reason: str = "") -> bytes | None:
        """End one of our streams (``reason`` goes with an abort). None if already over."""
        if self._out_streams.pop(stream_id, None) is None:
            return None
        if end == "end":
            return self._encode_control([wire.STREAM_DATA, stream_id, b"", True])
        return self._encode_control([wire.STREAM_ABORT, stream_id, reason])

    def stream_consumed(self, stream_id: int, size: int) -> bytes | None:
        """The application took ``size`` bytes of a stream: maybe grant credit."""
        stream = self._in_streams.get(stream_id)
        if stream is None:
            return None
        stream.consumed += size
        if stream.consumed < self.limits.stream_window // 2:
            return None
        granted, stream.consumed = stream.consumed, 0
        stream.unacknowledged -= granted
        return self._encode_control([wire.STREAM_CREDIT, stream_id, granted])

    def goodbye(self, reason: str) -> bytes:
        """The last message before closing on purpose."""
        return self._encode_control([wire.GOODBYE, reason])

    def data_to_send(self) -> bytes:
        """Queued control messages (releases, stops), as bytes; b"" if none."""
        if self.closed or not (self._decrefs or self._stops or self._control):
            return b""
        stops, self._stops = self._stops, []
        for stream_id in stops:
            self._control.append(self._encode_control([wire.STREAM_STOP, stream_id]))
        decrefs, self._decrefs = self._decrefs, []
        for start in range(0, len(decrefs), 2 * DECREF_BATCH):
            batch = decrefs[start : start + 2 * DECREF_BATCH]
            self._control.append(self._encode_control([wire.DECREF, batch]))
        control, self._control = self._control, []
        return b"".join(control)

    def _encode_control(self, message: Message) -> bytes:
        return wire.frame(self._packer.pack(message))

    def _encode(self, message: Message) -> bytes:
        peer = self.peer
        if peer is None:
            raise RuntimeError("the handshake is not finished")
        try:
            payload: bytes = self._packer.pack(message)
            if len(payload) > peer.max_frame:
                raise LimitExceeded(
                    f"message of {len(payload)} bytes exceeds the peer's maximum frame "
                    f"of {peer.max_frame} bytes"
                )
        except BaseException:
            self._roll_back()
            raise
        if self._new_exports:
            self._new_exports.clear()
        if self._new_streams:
            new_streams, self._new_streams = self._new_streams, []
            for sender, stream_id in new_streams:
                sender._attach(self._connection, stream_id)
        if self._new_fds:
            self._commit_fds()
        return wire.LENGTH_PREFIX.pack(len(payload)) + payload

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | memoryview) -> list[Event]:
        """Feed bytes read from the connection; return the events they complete.

        ``data`` may be a view of a buffer the caller reuses once this returns.

        Raises `ProtocolError` (or `HandshakeError`) if the peer broke the
        protocol; the connection must then be closed. Processing stops after
        a GOODBYE.
        """
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            if isinstance(payload, list):  # a piece of a large STREAM_DATA, decoded already
                message = payload
            elif self.peer is None:
                events.append(self._on_hello(payload))
                continue
            else:
                message = self._decode(payload)
            if type(message) is not list or not message or type(message[0]) is not int:
                raise ProtocolError("a message must be an array starting with a type code")
            handler = self._handlers.get(message[0])
            if handler is None:
                raise ProtocolError(f"unknown message type {message[0]}")
            event = handler(message)
            if event is not None:
                events.append(event)
                if type(event) is Goodbye:
                    return events
        if self._decoder.pending_error is not None:
            # The frames before the bad one were handled (the peer's hello
            # among them, so that our goodbye can be sent); the connection
            # is over now, and so are the events.
            raise self._decoder.pending_error
        return events

    def _decode(self, payload: bytes | memoryview) -> Any:
        if payload[:2] == b"\x94\x06":
            message = wire.parse_stream_data(payload)
            if message is not None:
                return message
        # msgpack decodes timestamps itself (our ext hook never sees them), so
        # they are looked for: in the bytes of a small message (cheaper than
        # a walk of its values), in the values of a large one (its bulk is
        # strings or binaries, which the walk skips and a scan would not).
        small = len(payload) <= wire.SCAN_FOR_TIMESTAMPS
        if small:
            if type(payload) is not bytes:
                payload = bytes(payload)
            ts4, ts8, ts12 = wire.TIMESTAMP_MARKERS
            self._may_hold_timestamp = ts4 in payload or ts8 in payload or ts12 in payload
        else:
            self._may_hold_timestamp = True
        try:
            message = self._unpack(payload)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"undecodable message: {type(exc).__name__}: {exc}") from None
        if self._may_hold_timestamp and wire.contains_timestamp(message):
            raise ProtocolError("unknown ext type -1 (msgpack timestamp)")
        return message

    def _on_hello(self, payload: bytes | memoryview) -> HandshakeDone:
        try:
            message = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_array_len=8,
                                      max_map_len=64, max_ext_len=0)
        except Exception as exc:
            raise wire.HandshakeError(
                f"peer does not speak {wire.PROTOCOL_NAME}: undecodable first message ({exc})"
            ) from None
        peer = self.peer = wire.parse_hello(message)
        self.max_chunk = min(MAX_CHUNK, peer.max_frame - wire.DATA_OVERHEAD)
        if peer.has_root:
            self.peer_root = RemoteReference(self._connection, 0)
        return HandshakeDone(peer)

    def _check(self, message: Message, shape: tuple[type, ...], name: str) -> None:
        if len(message) != len(shape) + 1 or any(
            type(value) is not expected for value, expected in zip(message[1:], shape, strict=True)
        ):
            raise ProtocolError(f"malformed {name} message")

    def _on_call(self, message: Message) -> Call:
        # The hot path: checked inline rather than with _check.
        if len(message) != 6:
            raise ProtocolError("malformed CALL message")
        _, call_id, object_id, method, args, kwargs = message
        if not (type(call_id) is int and type(object_id) is int and type(method) is str
                and type(args) is list and type(kwargs) is dict):
            raise ProtocolError("malformed CALL message")
        if call_id <= self._last_peer_call_id:
            raise ProtocolError(f"call id {call_id} does not increase")
        if kwargs and not _is_str_keyed(kwargs):
            raise ProtocolError("keyword argument names must be str")
        self._last_peer_call_id = call_id
        self._running_calls.add(call_id)
        export = self._exports.get(object_id)
        return Call(call_id, export.obj if export is not None else None, method, args, kwargs)

    def _on_send(self, message: Message) -> Send:
        self._check(message, (int, str, list, dict), "SEND")
        _, object_id, method, args, kwargs = message
        if not _is_str_keyed(kwargs):
            raise ProtocolError("keyword argument names must be str")
        export = self._exports.get(object_id)
        return Send(export.obj if export is not None else None, method, args, kwargs)

    def _finish_call(self, call_id: object) -> bool:
        """Whether an ANSWER or ERROR for ``call_id`` should be delivered."""
        if type(call_id) is not int:
            raise ProtocolError("malformed call id")
        if call_id in self._pending_calls:
            self._pending_calls.discard(call_id)
            return True
        if call_id in self._cancelled_calls:
            self._cancelled_calls.discard(call_id)
            return False
        raise ProtocolError(f"answer for unknown call id {call_id}")

    def _on_answer(self, message: Message) -> Answer | None:
        if len(message) != 3:
            raise ProtocolError("malformed ANSWER message")
        if self._finish_call(message[1]):
            return Answer(message[1], message[2])
        return None

    def _on_error(self, message: Message) -> Error | None:
        if len(message) != 7:
            raise ProtocolError("malformed ERROR message")
        _, call_id, code, type_name, text, traceback, exception = message
        if not (type(code) is int and type(type_name) is str and type(text) is str
                and (traceback is None or type(traceback) is str)):
            raise ProtocolError("malformed ERROR message")
        if self._finish_call(call_id):
            return Error(call_id, code, type_name, text, traceback, exception)
        return None

    def _on_cancel(self, message: Message) -> Cancel | None:
        self._check(message, (int,), "CANCEL")
        call_id = message[1]
        if call_id > self._last_peer_call_id:
            raise ProtocolError(f"cancel for call id {call_id}, which was never made")
        return Cancel(call_id) if call_id in self._running_calls else None

    def _on_decref(self, message: Message) -> None:
        self._check(message, (list,), "DECREF")
        pairs = message[1]
        if len(pairs) % 2 or any(type(value) is not int for value in pairs):
            raise ProtocolError("malformed DECREF message")
        for index in range(0, len(pairs), 2):
            object_id, count = pairs[index], pairs[index + 1]
            export = self._exports.get(object_id)
            if object_id == 0 or export is None:
                raise ProtocolError(f"decref of unknown object {object_id}")
            if not 0 < count <= export.count:
                raise ProtocolError(f"decref of object {object_id} by {count}, "
                                    f"more than the {export.count} sent")
            self._release_export(object_id, count)

    def _on_stream_data(self, message: Message) -> StreamData | None:
        self._check(message, (int, bytes, bool), "STREAM_DATA")
        _, stream_id, data, end = message
        stream = self._in_streams.get(stream_id)
        if stream is None:
            if stream_id in self._stopped_streams:
                if end:
                    self._stopped_streams.discard(stream_id)
                return None
            raise ProtocolError(f"data for unknown stream {stream_id}")
        stream.unacknowledged += len(data)
        if stream.unacknowledged > self.limits.stream_window:
            raise ProtocolError(f"stream {stream_id} overran its credit")
        receiver = stream.receiver_ref()
        if end:
            del self._in_streams[stream_id]
        if receiver is None:
            return None
        return StreamData(receiver, data, end)

    def _on_stream_abort(self, message: Message) -> StreamAborted | None:
        self._check(message, (int, str), "STREAM_ABORT")
        _, stream_id, reason = message
        stream = self._in_streams.pop(stream_id, None)
        if stream is None:
            if stream_id in self._stopped_streams:
                self._stopped_streams.discard(stream_id)
                return None
            raise ProtocolError(f"abort of unknown stream {stream_id}")
        receiver = stream.receiver_ref()
        return StreamAborted(receiver, reason) if receiver is not None else None

    def _on_stream_credit(self, message: Message) -> StreamCredit | None:
        self._check(message, (int, int), "STREAM_CREDIT")
        _, stream_id, size = message
        if size <= 0:
            raise ProtocolError("stream credit must be positive")
        stream = self._out_streams.get(stream_id)
        if stream is None:
            if 0 < stream_id < self._next_stream_id:
                return None  # the stream ended while the credit was on its way
            raise ProtocolError(f"credit for unknown stream {stream_id}")
        stream.credit += size
        return StreamCredit(stream.sender)

    def _on_stream_stop(self, message: Message) -> StreamStopped | None:
        self._check(message, (int,), "STREAM_STOP")
        stream_id = message[1]
        stream = self._out_streams.pop(stream_id, None)
        if stream is None:
            if 0 < stream_id < self._next_stream_id:
                return None  # we ended it already; our final message is on its way
            raise ProtocolError(f"stop for unknown stream {stream_id}")
        # The consumer waits for a final message before forgetting the id.
        self._control.append(self._encode_control([wire.STREAM_ABORT, stream_id, "stopped"]))
        return StreamStopped(stream.sender)

    def _on_goodbye(self, message: Message) -> Goodbye:
        self._check(message, (str,), "GOODBYE")
        return Goodbye(message[1])

    # ------------------------------------------------------------------ close

    @property
    def open_streams(self) -> int:
        return len(self._out_streams) + len(self._in_streams)

    def close(self) -> tuple[list[RemoteReference], list[StreamSender], list[StreamReceiver]]:
        """Mark the connection over; return the live imports and streams to fail.

        Exports are forgotten so that the objects can be collected.
        """
        self.closed = True
        references = [ref for ref in (entry() for entry in list(self._imports.values()))
                      if ref is not None]
        if self.peer_root is not None:
            references.append(self.peer_root)
        senders = [stream.sender for stream in self._out_streams.values()]
        receivers = [receiver for receiver in
                     (stream.receiver_ref() for stream in self._in_streams.values())
                     if receiver is not None]
        self._imports.clear()
        self._exports.clear()
        self._export_ids.clear()
        self._out_streams.clear()
        self._in_streams.clear()
        self._decrefs.clear()
        self._stops.clear()
        self._control.clear()
        self.discard_fds()
        return references, senders, receivers
