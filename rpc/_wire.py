"""Bytes on the wire: frames, message codes, ext codes, limits, the hello.

docs/protocol.md is the specification; this module holds its constants and
the two pieces that deal with raw bytes: `FrameDecoder` (length-prefixed
frames in, payloads out, lengths checked before the body is buffered) and
`frame` (payload out, length prefix added). Message semantics live in
`rpc._protocol`.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import msgpack

from ._errors import HandshakeError, ProtocolError

PROTOCOL_NAME = "trioweb-rpc"
PROTOCOL_VERSION = 1

# Message type codes: the first element of every message array after the hello.
CALL = 0
ANSWER = 1
ERROR = 2
SEND = 3
CANCEL = 4
DECREF = 5
STREAM_DATA = 6
STREAM_CREDIT = 7
STREAM_ABORT = 8
STREAM_STOP = 9
GOODBYE = 10

# ERROR codes: why a call failed.
ERR_EXCEPTION = 0  # the method raised
ERR_NO_SUCH_METHOD = 1
ERR_DEAD_REFERENCE = 2  # the call named an object that is not exported
ERR_TOO_MANY_CALLS = 3
ERR_CANCELLED = 4  # the caller cancelled; this is the final message for its id

# msgpack ext type codes for values that are not plain data.
EXT_REMOTE = 1  # an object of the sender's, passed by reference
EXT_YOURS = 2  # an object of the receiver's, passed back to it
EXT_COPY = 3  # a registered copyable: [name, state]
EXT_STREAM = 4  # a byte stream produced by the sender
EXT_FD = 5  # an open file descriptor, passed beside the message (empty payload)

ID_FORMAT = struct.Struct(">Q")  # payload of EXT_REMOTE, EXT_YOURS, EXT_STREAM
LENGTH_PREFIX = struct.Struct(">I")
MAX_ID = 2**64 - 1
MAX_FRAME_CEILING = 2**32 - 1  # what a 4-byte length prefix can express
MIN_FRAME = 4096  # so that a hello and small control messages always fit
MIN_ARRAY_LEN = 2048  # every side accepts arrays this long (a DECREF batch fits)
MAX_FDS = 253  # descriptors one message may carry (the kernel's SCM_MAX_FD)
MAX_HELLO = 4096  # the first frame each way is a hello, at most this long
DATA_OVERHEAD = 32  # bytes around a STREAM_DATA payload in its frame, upper bound
# A STREAM_DATA payload from this size on is written as its own buffer (no copy).
SEPARATE_PAYLOAD = 16 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits one side enforces on what it receives (and on its send queue).

    Each side announces ``max_frame``, ``max_refs``, ``max_streams`` and
    ``stream_window`` in its hello so that the peer can refuse locally
    (`rpc.LimitExceeded`) what this side would reject. The msgpack limits
    (lengths of str, bin, array and map) bound what one frame can make the
    decoder allocate; see docs/protocol.md, "Limits".
    """

    max_frame: int = 16 * 1024 * 1024
    max_calls: int = 64  # incoming calls running at once
    max_queued_calls: int = 256  # incoming calls waiting for a slot
    max_refs: int = 1024  # live references each way
    max_streams: int = 256  # live incoming streams
    stream_window: int = 1024 * 1024  # bytes in flight per incoming stream
    max_array_len: int = 8192
    max_map_len: int = 8192
    max_copy_depth: int = 16  # copies nested in copies
    max_send_queue: int = 64 * 1024 * 1024  # bytes queued for a peer that does not read
    # Open file descriptors accepted per message, and held received but not yet
    # claimed by a message (UNIX sockets only; 0: none, the default).
    max_fds: int = 0

    def __post_init__(self) -> None:
        if not MIN_FRAME <= self.max_frame <= MAX_FRAME_CEILING:
            raise ValueError(f"max_frame must be in [{MIN_FRAME}, {MAX_FRAME_CEILING}]")
        for name in ("max_calls", "max_refs", "max_streams", "stream_window",
                     "max_array_len", "max_map_len", "max_copy_depth", "max_send_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_array_len < MIN_ARRAY_LEN:
            raise ValueError(f"max_array_len must be at least {MIN_ARRAY_LEN}")
        if self.max_queued_calls < 0:
            raise ValueError("max_queued_calls must not be negative")
        if not 0 <= self.max_fds <= MAX_FDS:
            raise ValueError(f"max_fds must be in [0, {MAX_FDS}]")

    def hello(self, has_root: bool, max_fds: int = 0) -> list:
        """The hello message this side sends (``max_fds``: 0 where the
        connection cannot carry descriptors)."""
        return [
            PROTOCOL_NAME,
            PROTOCOL_VERSION,
            {
                "max_frame": self.max_frame,
                "max_refs": self.max_refs,
                "max_streams": self.max_streams,
                "stream_window": self.stream_window,
                "root": has_root,
                "max_fds": max_fds,
            },
        ]


@dataclasses.dataclass(frozen=True)
class PeerHello:
    """What the peer announced in its hello."""

    max_frame: int
    max_refs: int
    max_streams: int
    stream_window: int
    has_root: bool
    max_fds: int = 0  # descriptors it accepts per message (absent from older hellos: 0)


def parse_hello(message: object) -> PeerHello:
    """Validate the peer's hello; raise `HandshakeError` saying what is wrong."""
    if not (isinstance(message, list) and len(message) == 3 and message[0] == PROTOCOL_NAME):
        raise HandshakeError(
            f"peer does not speak {PROTOCOL_NAME}: its first message is not a hello"
        )
    version, options = message[1], message[2]
    if version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"peer speaks {PROTOCOL_NAME} version {version!r}, "
            f"this side speaks version {PROTOCOL_VERSION}"
        )
    if not isinstance(options, dict):
        raise HandshakeError("hello options are not a map")
    values = {}
    for key, low, high in (
        ("max_frame", MIN_FRAME, MAX_FRAME_CEILING),
        ("max_refs", 1, MAX_ID),
        ("max_streams", 1, MAX_ID),
        ("stream_window", 1, MAX_ID),
    ):
        value = options.get(key)
        if type(value) is not int or not low <= value <= high:
            raise HandshakeError(f"hello option {key!r} is {value!r}, not an int in [{low}, {high}]")
        values[key] = value
    has_root = options.get("root")
    if type(has_root) is not bool:
        raise HandshakeError(f"hello option 'root' is {has_root!r}, not a bool")
    max_fds = options.get("max_fds", 0)
    if type(max_fds) is not int or not 0 <= max_fds <= MAX_FDS:
        raise HandshakeError(f"hello option 'max_fds' is {max_fds!r}, not an int in [0, {MAX_FDS}]")
    return PeerHello(has_root=has_root, max_fds=max_fds, **values)


def frame(payload: bytes) -> bytes:
    """Prefix one encoded message with its length."""
    return LENGTH_PREFIX.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frame payloads.

    A length prefix is checked against ``max_frame`` as soon as its four bytes
    have arrived, before any of the body is buffered, so a peer cannot make
    this side hold more than one maximum frame plus one read. The first frame
    is the hello and is held to ``MAX_HELLO``; a wrong first length is a
    `HandshakeError` (the peer speaks something else).

    The payload of a large STREAM_DATA frame (``LARGE_DATA`` bytes or more)
    is not buffered: once its header is in, its bytes are handed on as they
    arrive, as STREAM_DATA messages of their own (the frame's end flag goes
    with its last byte, in a message without data). `direct_read_size` tells
    the reader how many such bytes are still to come, so that it can read
    them as a chunk of their own, which is then passed on without a copy.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.pending_error: ProtocolError | None = None
        self._first = True
        # The start of a frame that is not complete yet, copied out of the
        # reads it came in (a reader may reuse its buffer), joined once when
        # enough is there.
        self._pieces: list[bytes] = []
        self._pieces_size = 0
        self._needed = 4  # bytes of that frame needed before it can be parsed further
        # A large STREAM_DATA payload being handed on as it arrives.
        self._data_stream = 0
        self._data_left = 0  # its bytes still to come
        self._end_flag_due = False  # its last byte, the end flag, still to come
        self._data_received = 0  # bytes of its frame received so far

    @property
    def buffered(self) -> int:
        """Bytes received of a frame that is not complete yet."""
        return self._pieces_size + self._data_received

    def direct_read_size(self) -> int:
        """Bytes of a large STREAM_DATA payload still to come, best read on their own."""
        return self._data_left

    def data_stream(self) -> int:
        """The stream whose large payload is coming (meaningful while `direct_read_size`)."""
        return self._data_stream

    def spliced(self, size: int) -> int:
        """``size`` bytes of the large payload coming were moved elsewhere
        (into a pipe) instead of being fed; returns the stream's id."""
        if not 0 < size <= self._data_left:
            raise ValueError("spliced bytes beyond the payload")
        self._data_left -= size
        self._data_received += size
        self._end_flag_due = not self._data_left
        return self._data_stream

    def feed(self, data: bytes | memoryview) -> list[bytes | memoryview | list]:
        """Add received bytes; return the payloads of the frames they complete.

        Payloads are bytes, or views of ``data`` to be decoded before the next
        call (``data`` may be a view of a buffer the reader reuses: what is
        kept across calls is copied). The pieces of a large STREAM_DATA payload
        come as decoded messages ``[STREAM_DATA, stream_id, data, end]``.

        A bad length prefix is raised after the frames before it were
        returned: the next call raises it (`pending_error` tells whether one
        is waiting), so that a peer's valid messages are handled first.
        """
        if self.pending_error is not None:
            raise self.pending_error
        if not (self._pieces or self._data_left or self._end_flag_due or self._first) and len(data) > 4:
            (length,) = LENGTH_PREFIX.unpack_from(data)
            if length == len(data) - 4 and 0 < length <= self.max_frame:
                return [data[4:]]  # the common case: one small frame per read
        view = memoryview(data)
        end = len(view)
        payloads: list[bytes | memoryview | list] = []
        position = 0
        while position < end:
            if self._data_left:
                size = min(self._data_left, end - position)
                # Bytes read on their own are passed on as they are; a part of a larger read is copied.
                piece = data if size == end and type(data) is bytes else bytes(view[position : position + size])
                payloads.append([STREAM_DATA, self._data_stream, piece, False])
                position += size
                self._data_left -= size
                self._data_received += size
                self._end_flag_due = not self._data_left
            elif self._end_flag_due:
                flag = view[position]
                if flag not in (0xC2, 0xC3):
                    self.pending_error = ProtocolError("malformed STREAM_DATA message")
                    break
                if flag == 0xC3:
                    payloads.append([STREAM_DATA, self._data_stream, b"", True])
                position += 1
                self._end_flag_due = False
                self._data_received = 0
            elif self._pieces:
                size = min(self._needed - self._pieces_size, end - position)
                self._pieces.append(bytes(view[position : position + size]))
                self._pieces_size += size
                position += size
                if self._pieces_size < self._needed:
                    break
                joined = b"".join(self._pieces)
                self._pieces.clear()
                self._pieces_size = 0
                used = self._parse(memoryview(joined), 0, payloads)
                if self.pending_error is not None:
                    break
                if not used:  # more is needed to go on
                    self._pieces.append(joined)
                    self._pieces_size = len(joined)
                elif used < len(joined):  # the header of a large STREAM_DATA, and its first bytes
                    payloads.extend(self.feed(joined[used:]))
            else:
                used = self._parse(view, position, payloads)
                if not used:
                    if self.pending_error is None:
                        self._pieces.append(bytes(view[position:]))
                        self._pieces_size = end - position
                    break
                position += used
        if self.pending_error is not None and not payloads:
            raise self.pending_error
        return payloads

    def _parse(self, view: memoryview, position: int, payloads: list) -> int:
        """Take one frame (or the header of a large STREAM_DATA frame) from ``view``
        at ``position``; return the bytes used, 0 if more are needed (then
        ``_needed`` says how many, from ``position``) or on a bad length
        (``pending_error`` is then set)."""
        available = len(view) - position
        self._needed = 4
        if available < 4:
            return 0
        (length,) = LENGTH_PREFIX.unpack_from(view, position)
        if self._first and not 0 < length <= MAX_HELLO:
            self.pending_error = HandshakeError(
                f"peer does not speak {PROTOCOL_NAME}: first frame length {length} "
                f"is outside [1, {MAX_HELLO}]"
            )
            return 0
        if length == 0 or length > self.max_frame:
            self.pending_error = ProtocolError(f"frame length {length} is outside [1, {self.max_frame}]")
            return 0
        if available >= 4 + length:
            payloads.append(view[position + 4 : position + 4 + length])
            self._first = False
            return 4 + length
        if length >= LARGE_DATA and not self._first:
            if available < 4 + LARGE_DATA_HEADER:
                self._needed = 4 + LARGE_DATA_HEADER
                return 0
            header = _large_data_header(view[position + 4 : position + 4 + LARGE_DATA_HEADER], length)
            if header is not None:
                self._data_stream, header_size, self._data_left = header
                self._data_received = 4 + header_size
                return 4 + header_size
        self._needed = 4 + length
        return 0


# Payloads from this size on are handed on as they arrive (see FrameDecoder).
LARGE_DATA = 64 * 1024
# Bytes enough for the header of any STREAM_DATA frame: fixarray, type, uint64 id, bin32 length.
LARGE_DATA_HEADER = 1 + 1 + 9 + 5


def _large_data_header(head: memoryview, length: int) -> tuple[int, int, int] | None:
    """(stream id, header size, payload size) if ``head`` starts a STREAM_DATA
    message of ``length`` bytes with a 32-bit binary payload; None otherwise
    (the frame is then buffered whole and left to the generic decoder)."""
    if head[0] != 0x94 or head[1] != STREAM_DATA:
        return None
    marker = head[2]
    if marker < 0x80:
        stream_id, position = marker, 3
    elif marker in _UINT_SIZES:
        size = _UINT_SIZES[marker]
        stream_id, position = int.from_bytes(head[3 : 3 + size], "big"), 3 + size
    else:
        return None
    if head[position] != 0xC6:
        return None
    payload = int.from_bytes(head[position + 1 : position + 5], "big")
    position += 5
    if position + payload + 1 != length:
        return None
    return stream_id, position, payload


# Byte patterns of the three msgpack timestamp encodings (ext type -1), which
# msgpack decodes itself instead of passing them to our ext hook: a frame
# holding none of them cannot hold a timestamp.
TIMESTAMP_MARKERS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")
# Frames up to this size are scanned for those patterns; larger ones have
# their decoded values walked instead (see Protocol._decode).
SCAN_FOR_TIMESTAMPS = 16 * 1024


def contains_timestamp(value: Any) -> bool:
    """Whether a decoded value holds a msgpack Timestamp (ext type -1) anywhere."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, msgpack.Timestamp):
            return True
        if type(item) is list:
            pending.extend(item)
        elif type(item) is dict:
            pending.extend(item.values())
    return False


_UINT_SIZES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_BIN_SIZES = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def parse_stream_data(payload: bytes | memoryview) -> list | None:
    """Decode a STREAM_DATA message without msgpack; None if it is not one.

    The bulk of a stream is these messages, and their layout is fixed
    (``[6, uint, bin, bool]``, which can hold no ext type), so a direct parse
    spares the generic decoder's copy and its scan for timestamps. Anything
    unexpected is left to the generic decoder, which has the last word.
    """
    position = 2
    marker = payload[position] if len(payload) > position else None
    if marker is not None and marker < 0x80:
        stream_id = marker
        position += 1
    elif marker in _UINT_SIZES:
        size = _UINT_SIZES[marker]
        stream_id = int.from_bytes(payload[position + 1 : position + 1 + size], "big")
        position += 1 + size
    else:
        return None
    marker = payload[position] if position < len(payload) else None
    if marker not in _BIN_SIZES:
        return None
    size = _BIN_SIZES[marker]
    length = int.from_bytes(payload[position + 1 : position + 1 + size], "big")
    position += 1 + size
    if position + length + 1 != len(payload) or payload[-1] not in (0xC2, 0xC3):
        return None
    return [STREAM_DATA, stream_id, bytes(payload[position : position + length]),
            payload[-1] == 0xC3]


def stream_data_frame(stream_id: int, data: bytes | memoryview) -> tuple[bytes | memoryview, ...]:
    """A whole STREAM_DATA frame (end false), as buffers to write in order.

    A large ``data`` is one of them, as given: it reaches the socket without
    being copied into the frame.
    """
    size = len(data)
    if size < 256:
        bin_header = b"\xc4" + size.to_bytes(1, "big")
    elif size < 65536:
        bin_header = b"\xc5" + size.to_bytes(2, "big")
    else:
        bin_header = b"\xc6" + size.to_bytes(4, "big")
    head = b"\x94" + msgpack.packb(STREAM_DATA) + msgpack.packb(stream_id) + bin_header
    prefix = LENGTH_PREFIX.pack(len(head) + size + 1)
    if size < SEPARATE_PAYLOAD:
        return (b"".join((prefix, head, data, b"\xc2")),)
    return prefix + head, data, b"\xc2"
