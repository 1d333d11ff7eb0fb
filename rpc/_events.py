"""Events: what the peer did, as `rpc._protocol.Protocol.receive_data` reports it."""

from __future__ import annotations

from typing import Any

from ._streams import StreamReceiver, StreamSender
from ._wire import PeerHello


class Event:
    """Something the peer did, for the broker to act on."""

    __slots__: tuple[str, ...] = ()  # each event's fields, which its repr shows

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class HandshakeDone(Event):
    __slots__ = ("peer",)

    def __init__(self, peer: PeerHello) -> None:
        self.peer = peer


class Call(Event):
    """The peer calls ``method`` on ``target`` (None if not exported); answer ``call_id``."""

    __slots__ = ("args", "call_id", "kwargs", "method", "target")

    def __init__(self, call_id: int, target: Any, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.call_id = call_id
        self.target = target
        self.method = method
        self.args = args
        self.kwargs = kwargs


class Send(Event):
    """A one-way call: like `Call`, with no answer expected."""

    __slots__ = ("args", "kwargs", "method", "target")

    def __init__(self, target: Any, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.target = target
        self.method = method
        self.args = args
        self.kwargs = kwargs


class Answer(Event):
    __slots__ = ("call_id", "value")

    def __init__(self, call_id: int, value: Any) -> None:
        self.call_id = call_id
        self.value = value


class Error(Event):
    __slots__ = ("call_id", "code", "exception", "message", "traceback", "type_name")

    def __init__(self, call_id: int, code: int, type_name: str, message: str,
                 traceback: str | None, exception: Any) -> None:
        self.call_id = call_id
        self.code = code
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.exception = exception


class Cancel(Event):
    __slots__ = ("call_id",)

    def __init__(self, call_id: int) -> None:
        self.call_id = call_id


class StreamData(Event):
    __slots__ = ("data", "end", "receiver")

    def __init__(self, receiver: StreamReceiver, data: bytes, end: bool) -> None:
        self.receiver = receiver
        self.data = data
        self.end = end


class StreamAborted(Event):
    __slots__ = ("reason", "receiver")

    def __init__(self, receiver: StreamReceiver, reason: str) -> None:
        self.receiver = receiver
        self.reason = reason


class StreamCredit(Event):
    __slots__ = ("sender",)

    def __init__(self, sender: StreamSender) -> None:
        self.sender = sender


class StreamStopped(Event):
    __slots__ = ("sender",)

    def __init__(self, sender: StreamSender) -> None:
        self.sender = sender


class Goodbye(Event):
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason
