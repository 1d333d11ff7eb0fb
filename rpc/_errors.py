"""The exceptions of the rpc package.

Every exception the package raises on purpose derives from `RPCError`, so one
``except rpc.RPCError`` catches them all. They fall in three families:

- the connection is gone or unusable: `ConnectionLost` (and `DeadReference`,
  `HandshakeError`, `ProtocolError`, which explain why);
- the peer ran the call and it failed: `RemoteError` (and `NoSuchMethod`,
  `TooManyCalls`);
- a stream or a local limit refused the operation: `StreamError`,
  `LimitExceeded`.
"""

from __future__ import annotations


class RPCError(Exception):
    """Base class of every exception raised by the rpc package."""


class ConnectionLost(RPCError):
    """The connection is closed: pending and later calls fail with this.

    ``reason`` says why the connection ended (peer hung up, protocol error,
    closed locally); it is also the exception's message.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeadReference(ConnectionLost):
    """A call on a `RemoteReference` that can no longer reach its object.

    Raised at once, without touching the network, when the reference's
    connection is closed, and by the peer when the call names an object it no
    longer exports.
    """


class ProtocolError(ConnectionLost):
    """The peer broke the protocol (bad frame, bad message, broken limit).

    The connection is closed when this happens; the reason is logged on this
    side and sent to the peer in a goodbye message when possible.
    """


class HandshakeError(ProtocolError):
    """The peer does not speak this protocol, or not this version of it."""


class RemoteError(RPCError):
    """An exception raised by the remote method, as seen by the caller.

    ``remote_type`` is the name of the exception's class on the remote side,
    ``remote_message`` its ``str()``; ``remote_traceback`` is the formatted
    traceback when the remote broker was built with ``send_tracebacks=True``
    and None otherwise. Exception classes registered as copyable are raised
    as themselves instead (see `rpc.register_copyable`).
    """

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class NoSuchMethod(RemoteError):
    """The remote object has no ``remote_<name>`` method for the call."""


class TooManyCalls(RemoteError):
    """The peer refused the call: its running and queued calls are at their limit."""


class StreamError(RPCError):
    """A stream ended abnormally: aborted by its producer or stopped by its consumer."""


class LimitExceeded(RPCError):
    """An outgoing message would break a limit the peer announced.

    Raised locally (nothing is sent) when a message is larger than the peer's
    maximum frame, or would give the peer more references or streams than it
    accepts. The connection stays usable.
    """
