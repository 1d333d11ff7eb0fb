"""Values on the wire: references, copies and streams as msgpack ext types.

`ValueCodec` is the half of `rpc._protocol.Protocol` that turns Python
values into msgpack and back (its ``default`` and ``ext_hook``), and keeps
the tables that give ext ids their meaning: objects we export and import
(with their counts), streams we produce and consume. The rules it enforces
are in the theory of operation of `rpc._protocol`; encoding is
transactional (`_roll_back` undoes the exports and streams of a message
that could not be encoded). It relies on the attributes Protocol sets:
``limits``, ``peer``, ``closed``, ``_unpack``, ``_decrefs`` and
``_output_ready``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from . import _wire as wire
from ._copyable import copy_name, make_copy
from ._errors import LimitExceeded, ProtocolError
from ._references import ExportEntry, ImportEntry, Referenceable, RemoteReference
from ._streams import IncomingStreamState, OutgoingStreamState, StreamReceiver, StreamSender


class ValueCodec:
    """Encoding and decoding of values, with the reference and stream tables."""

    def __init__(self, root: Any) -> None:
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

    def set_root(self, root: Any) -> None:
        """Offer ``root`` as object 0; only before the hello is sent."""
        if root is not None:
            self._exports[0] = ExportEntry(root)
            self._export_ids[id(root)] = 0

    def _roll_back(self) -> None:
        for object_id in self._new_exports:
            self._release_export(object_id, 1)
        self._new_exports.clear()
        for _sender, stream_id in self._new_streams:
            del self._out_streams[stream_id]
        self._new_streams.clear()

    def _encode_extra(self, obj: Any) -> msgpack.ExtType:
        """msgpack's ``default`` hook: references, streams and copies."""
        if isinstance(obj, Referenceable):
            return msgpack.ExtType(wire.EXT_REMOTE, wire.ID_FORMAT.pack(self._export(obj)))
        cls = type(obj)
        if cls is RemoteReference:
            if obj._protocol is not self:
                raise TypeError("a RemoteReference can only be sent over its own connection")
            return msgpack.ExtType(wire.EXT_YOURS, wire.ID_FORMAT.pack(obj._object_id))
        if isinstance(obj, StreamSender):
            return msgpack.ExtType(wire.EXT_STREAM, wire.ID_FORMAT.pack(self._bind_stream(obj)))
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
            if len(self._exports) >= self.peer.max_refs:
                raise LimitExceeded(f"the peer accepts at most {self.peer.max_refs} references")
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
        if len(self._out_streams) >= self.peer.max_streams:
            raise LimitExceeded(f"the peer accepts at most {self.peer.max_streams} open streams")
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._out_streams[stream_id] = OutgoingStreamState(sender, self.peer.stream_window)
        self._new_streams.append((sender, stream_id))
        return stream_id

    def _decode_extra(self, code: int, data: bytes) -> Any:
        """msgpack's ``ext_hook``: our four ext types, nothing else."""
        if code == wire.EXT_COPY:
            return self._decode_copy(data)
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
        reference = RemoteReference(self, object_id)
        self._imports[object_id] = ImportEntry(reference, self._import_collected, object_id)
        return reference

    def _import_collected(self, entry: ImportEntry) -> None:
        # Runs when a RemoteReference is garbage collected, at any point of
        # our code: only append to lists and ask the owner to flush later.
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
        receiver = StreamReceiver(self, stream_id)
        self._in_streams[stream_id] = IncomingStreamState(receiver)
        return receiver
