"""Values on the wire: references, copies and streams as msgpack ext types.

`ValueCodec` is the base of `rpc._protocol.Protocol`: the half that turns
Python values into msgpack and back (the packer's ``default`` and the
unpacker's ``ext_hook``), with the tables that give ext ids their meaning:
objects we export and import (with their counts), streams we produce and
consume. It holds what both halves read: our limits, the peer's hello,
whether the connection is closed. The references and receivers it makes get
the `rpc._connection.Connection` the protocol was made with, which it never
calls itself.

A reference collected or a receiver dropped can happen anywhere, even in
another thread: their DECREF and STOP are only queued (ids in lists, nothing
encoded) and ``on_output`` called; `Protocol.data_to_send` encodes them.

The rules it enforces are in the theory of operation of `rpc._protocol`;
encoding is transactional (`_roll_back` undoes the exports and streams of a
message that could not be encoded).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from . import _wire as wire
from ._copyable import copy_name, make_copy
from ._errors import LimitExceeded, ProtocolError
from ._fds import FileDescriptor, close_all
from ._references import ExportEntry, ImportEntry, Referenceable, RemoteReference
from ._streams import IncomingStreamState, OutgoingStreamState, StreamReceiver, StreamSender

if TYPE_CHECKING:
    from ._connection import Connection


class ValueCodec:
    """Encoding and decoding of values, with the reference and stream tables."""

    def __init__(self, limits: wire.Limits, root: Any, connection: Connection | None) -> None:
        self.limits = limits
        self.peer: wire.PeerHello | None = None  # the peer's hello, once received
        self.closed = False
        # Called when control output is queued outside a request (see `data_to_send`).
        self.on_output: Callable[[], None] | None = None
        self._connection = connection
        self._packer = msgpack.Packer(default=self._encode_extra, use_bin_type=True)
        self._unpack = functools.partial(
            msgpack.unpackb, raw=False, strict_map_key=True, use_list=True,
            ext_hook=self._decode_extra, max_str_len=limits.max_frame,
            max_bin_len=limits.max_frame, max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len, max_ext_len=limits.max_frame,
        )
        # Objects we export, objects we import.
        self._exports: dict[int, ExportEntry] = {}
        self._export_ids: dict[int, int] = {}  # id(obj) -> object id
        self._next_object_id = 1
        self.set_root(root)
        self._imports: dict[int, ImportEntry] = {}
        self.peer_root: RemoteReference | None = None
        # Streams we produce, streams we consume.
        self._out_streams: dict[int, OutgoingStreamState] = {}
        self._next_stream_id = 1
        self._in_streams: dict[int, IncomingStreamState] = {}
        self._stopped_streams: set[int] = set()
        self._last_peer_stream_id = 0
        # Per-message state of the encoder and decoder.
        self._new_exports: list[int] = []
        self._new_streams: list[tuple[StreamSender, int]] = []
        self._copy_depth = 0
        self._may_hold_timestamp = False
        # Open files: whether this connection can carry them (a UNIX socket: set
        # by the broker before the hello), those of the message being encoded,
        # those of the last message encoded (for the broker to write with it),
        # and those received that no decoded message has claimed yet.
        self.carries_fds = False
        self._new_fds: list[FileDescriptor] = []
        self.outgoing_fds: list[int] = []
        self._received_fds: collections.deque[int] = collections.deque()
        # Queued for `data_to_send`: (object id, count) pairs to release, streams to stop.
        self._decrefs: list[int] = []
        self._stops: list[int] = []

    def set_root(self, root: Any) -> None:
        """Offer ``root`` as object 0; only before the hello is sent."""
        if root is not None:
            self._exports[0] = ExportEntry(root)
            self._export_ids[id(root)] = 0

    def stream_dropped(self, stream_id: int) -> None:
        """The application stopped reading a stream: queue a STOP for `data_to_send`.

        Called by a receiver closed or garbage collected, anywhere: it only
        queues (see the module documentation).
        """
        if self.closed or self._in_streams.pop(stream_id, None) is None:
            return
        self._stopped_streams.add(stream_id)
        self._stops.append(stream_id)
        self._output_ready()

    def _output_ready(self) -> None:
        if self.on_output is not None:
            self.on_output()

    def _roll_back(self) -> None:
        for object_id in self._new_exports:
            self._release_export(object_id, 1)
        self._new_exports.clear()
        for _sender, stream_id in self._new_streams:
            del self._out_streams[stream_id]
        self._new_streams.clear()
        self._new_fds.clear()  # still owned by their FileDescriptor objects

    def _encode_extra(self, obj: Any) -> msgpack.ExtType:
        """msgpack's ``default`` hook: references, streams and copies."""
        if isinstance(obj, Referenceable):
            return msgpack.ExtType(wire.EXT_REMOTE, wire.ID_FORMAT.pack(self._export(obj)))
        cls = type(obj)
        if cls is RemoteReference:
            if not self._imported(obj):
                raise TypeError("a RemoteReference can only be sent over its own connection")
            return msgpack.ExtType(wire.EXT_YOURS, wire.ID_FORMAT.pack(obj._object_id))
        if isinstance(obj, StreamSender):
            return msgpack.ExtType(wire.EXT_STREAM, wire.ID_FORMAT.pack(self._bind_stream(obj)))
        if cls is FileDescriptor:
            self._add_fd(obj)
            return msgpack.ExtType(wire.EXT_FD, b"")
        name = copy_name(cls)
        if name is None:
            raise TypeError(
                f"cannot send a {cls.__module__}.{cls.__qualname__}: only plain data, "
                "Referenceable, registered Copyable and StreamSender values cross"
            )
        content = msgpack.packb([name, obj.getStateToCopy()], default=self._encode_extra,
                                use_bin_type=True)
        return msgpack.ExtType(wire.EXT_COPY, content)

    def _export(self, obj: Any) -> int:
        object_id = self._export_ids.get(id(obj))
        if object_id is None:
            max_refs = self._peer_hello().max_refs
            if len(self._exports) >= max_refs:
                raise LimitExceeded(f"the peer accepts at most {max_refs} references")
            object_id = self._next_object_id
            self._next_object_id += 1
            self._exports[object_id] = ExportEntry(obj)
            self._export_ids[id(obj)] = object_id
        self._exports[object_id].count += 1
        self._new_exports.append(object_id)
        return object_id

    def _release_export(self, object_id: int, count: int) -> None:
        export = self._exports[object_id]
        export.count -= count
        if export.count <= 0 and object_id != 0:
            del self._exports[object_id]
            del self._export_ids[id(export.obj)]

    def _bind_stream(self, sender: StreamSender) -> int:
        if sender.sent or any(pending is sender for pending, _ in self._new_streams):
            raise ValueError("a StreamSender can be sent only once")
        peer = self._peer_hello()
        if len(self._out_streams) >= peer.max_streams:
            raise LimitExceeded(f"the peer accepts at most {peer.max_streams} open streams")
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._out_streams[stream_id] = OutgoingStreamState(sender, peer.stream_window)
        self._new_streams.append((sender, stream_id))
        return stream_id

    def _add_fd(self, fd: FileDescriptor) -> None:
        max_fds = self._peer_hello().max_fds
        if not self.carries_fds:
            raise TypeError("file descriptors cross only connections over UNIX sockets")
        if len(self._new_fds) >= max_fds:
            raise LimitExceeded(f"the peer accepts at most {max_fds} file descriptors per message")
        fd.fileno()  # ValueError if it was closed or given away
        if any(pending is fd for pending in self._new_fds):
            raise ValueError("a FileDescriptor can be sent only once")
        self._new_fds.append(fd)

    def _commit_fds(self) -> None:
        """The message is encoded: its descriptors are the connection's now, to write with it."""
        assert not self.outgoing_fds  # the broker takes them with each message it writes
        self.outgoing_fds = [fd.detach() for fd in self._new_fds]
        self._new_fds.clear()

    def receive_fds(self, fds: list[int], truncated: bool) -> None:
        """Descriptors came with a read (ours now); ``truncated``: the kernel dropped
        some that did not fit. Held until the messages that carry them are decoded."""
        self._received_fds.extend(fds)
        if truncated or len(self._received_fds) > self.limits.max_fds:
            self.discard_fds()
            raise ProtocolError(f"the peer passed more file descriptors than the {self.limits.max_fds} "
                                "this side accepts")

    def discard_fds(self) -> None:
        """Close the descriptors received and not claimed, and those of a message not written."""
        close_all(self._received_fds)
        self._received_fds.clear()
        close_all(self.outgoing_fds)
        self.outgoing_fds = []

    def _peer_hello(self) -> wire.PeerHello:
        """The peer's hello, while encoding: values are encoded only after the handshake."""
        peer = self.peer
        if peer is None:
            raise RuntimeError("the handshake is not finished")
        return peer

    def _imported(self, reference: RemoteReference) -> bool:
        """Whether ``reference`` is one this codec made (it names an object of our peer)."""
        if reference is self.peer_root:
            return True
        entry = self._imports.get(reference._object_id)
        return entry is not None and entry() is reference

    def _decode_extra(self, code: int, data: bytes) -> Any:
        """msgpack's ``ext_hook``: our five ext types, nothing else."""
        if code == wire.EXT_COPY:
            return self._decode_copy(data)
        if code == wire.EXT_FD:
            if data:
                raise ProtocolError(f"ext type {code} payload is {len(data)} bytes, not 0")
            if not self._received_fds:
                raise ProtocolError("a file descriptor value, but no descriptor came with the message")
            return FileDescriptor(self._received_fds.popleft())
        if code not in (wire.EXT_REMOTE, wire.EXT_YOURS, wire.EXT_STREAM):
            raise ProtocolError(f"unknown ext type {code}")
        if len(data) != wire.ID_FORMAT.size:
            raise ProtocolError(f"ext type {code} payload is {len(data)} bytes, not 8")
        (ident,) = wire.ID_FORMAT.unpack(data)
        if code == wire.EXT_REMOTE:
            return self._import(ident)
        if code == wire.EXT_YOURS:
            export = self._exports.get(ident)
            if export is None:
                raise ProtocolError(f"peer passed back object {ident}, which is not exported")
            return export.obj
        return self._open_incoming_stream(ident)

    def _decode_copy(self, data: bytes) -> Any:
        if self._copy_depth >= self.limits.max_copy_depth:
            raise ProtocolError(f"copies nested deeper than {self.limits.max_copy_depth}")
        self._copy_depth += 1
        try:
            content = self._unpack(data)
        finally:
            self._copy_depth -= 1
        if not (type(content) is list and len(content) == 2 and type(content[0]) is str):
            raise ProtocolError("a copy must be [name, state]")
        name, state = content
        if self._may_hold_timestamp and wire.contains_timestamp(state):
            raise ProtocolError("unknown ext type -1 (msgpack timestamp)")
        try:
            return make_copy(name, state)
        except KeyError:
            raise ProtocolError(f"unknown copyable name {name!r}") from None
        except Exception as exc:
            raise ProtocolError(
                f"copyable {name!r} refused its state: {type(exc).__name__}: {exc}"
            ) from None

    def _import(self, object_id: int) -> RemoteReference:
        if object_id == 0 and self.peer_root is not None:
            return self.peer_root
        entry = self._imports.get(object_id)
        if entry is not None:
            reference = entry()
            if reference is not None:
                entry.count += 1
                return reference
        if len(self._imports) >= self.limits.max_refs:
            raise ProtocolError(f"peer passed more than {self.limits.max_refs} live references")
        reference = RemoteReference(self._connection, object_id)
        self._imports[object_id] = ImportEntry(reference, self._import_collected, object_id)
        return reference

    def _import_collected(self, entry: ImportEntry) -> None:
        # Runs when a RemoteReference is garbage collected, at any point of
        # our code: only append to lists and ask the broker to flush later.
        if self._imports.get(entry.object_id) is entry:
            del self._imports[entry.object_id]
        if self.closed:
            return
        self._decrefs += (entry.object_id, entry.count)
        self._output_ready()

    def _open_incoming_stream(self, stream_id: int) -> StreamReceiver:
        if stream_id <= self._last_peer_stream_id:
            raise ProtocolError(f"stream id {stream_id} reused")
        if len(self._in_streams) >= self.limits.max_streams:
            raise ProtocolError(f"peer opened more than {self.limits.max_streams} streams")
        self._last_peer_stream_id = stream_id
        receiver = StreamReceiver(self, self._connection, stream_id)
        self._in_streams[stream_id] = IncomingStreamState(receiver)
        return receiver
