"""A PB-style RPC over trio streams, with msgpack on the wire.

Twisted's Perspective Broker rebuilt on trio: `Referenceable` objects go by
reference and are called through `RemoteReference.callRemote`; `Copyable`
objects go by value under a registered name; exceptions come back as
`RemoteError`. Added: cancellation, byte streams with credit-based flow
control (`StreamSender` / `StreamReceiver`), hard limits on every size and
count, peer credentials for UNIX sockets, and open files passed over them
(`FileDescriptor`). The wire protocol is specified
in docs/protocol.md. This package knows nothing of HTTP.
"""

from ._broker import Broker
from ._copyable import Copyable, RemoteCopy, copyable, register_copyable
from ._credentials import PeerCredentials, peer_credentials_of
from ._errors import (
    ConnectionLost,
    DeadReference,
    HandshakeError,
    LimitExceeded,
    NoSuchMethod,
    ProtocolError,
    RemoteError,
    RPCError,
    StreamError,
    TooManyCalls,
)
from ._fds import FileDescriptor
from ._pending import PendingCall
from ._references import Referenceable, RemoteReference
from ._sockets import (
    connect_tcp,
    connect_tls,
    connect_unix,
    serve_tcp,
    serve_tls,
    serve_unix,
)
from ._streams import PipePiece, StreamReceiver, StreamSender
from ._wire import PROTOCOL_NAME, PROTOCOL_VERSION, Limits

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "Broker",
    "ConnectionLost",
    "Copyable",
    "DeadReference",
    "FileDescriptor",
    "HandshakeError",
    "LimitExceeded",
    "Limits",
    "NoSuchMethod",
    "PeerCredentials",
    "PendingCall",
    "PipePiece",
    "ProtocolError",
    "RPCError",
    "Referenceable",
    "RemoteCopy",
    "RemoteError",
    "RemoteReference",
    "StreamError",
    "StreamReceiver",
    "StreamSender",
    "TooManyCalls",
    "connect_tcp",
    "connect_tls",
    "connect_unix",
    "copyable",
    "peer_credentials_of",
    "register_copyable",
    "serve_tcp",
    "serve_tls",
    "serve_unix",
]
