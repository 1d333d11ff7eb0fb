"""Objects passed by reference: `Referenceable` and `RemoteReference`.

A `Referenceable` stays where it is; the peer gets a `RemoteReference` naming
it by an object id and calls its ``remote_*`` methods through the connection
(the `rpc._connection.Connection` it was made with). The counting that keeps
an exported object alive exactly as long as the peer holds a reference to it
is done by `rpc._protocol` (see its theory of operation); this module holds
the user-facing classes.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from ._errors import DeadReference

if TYPE_CHECKING:
    from ._broker import Broker
    from ._connection import Connection
    from ._pending import PendingCall

logger = logging.getLogger("rpc")


class Referenceable:
    """Base class of objects passed by reference.

    Only methods named ``remote_<name>`` can be called by the peer, as
    ``callRemote("<name>", ...)``. A method may be a plain function, which
    runs inline in the connection's reader task and so must not block, or an
    ``async def``, which runs in its own task, counts against the
    connection's concurrent-call limit, and is cancelled when the caller
    cancels or the connection is lost.
    """


class RemoteReference:
    """A reference to an object that lives on the other side of a connection.

    Made by the broker when the peer passes a `Referenceable`; never made
    directly. While it is alive the peer keeps the object exported; once it
    is garbage collected its release is sent in a batch with others. When the
    connection closes, the reference is dead: calls raise `DeadReference` at
    once and the callbacks registered with `notifyOnDisconnect` run.
    """

    __slots__ = ("__weakref__", "_connection", "_disconnect_callbacks", "_object_id")

    def __init__(self, connection: Connection | None, object_id: int) -> None:
        self._connection = connection  # None: made by a protocol without a broker, dead
        self._object_id = object_id
        self._disconnect_callbacks: list[Callable[[RemoteReference], object]] = []

    @property
    def broker(self) -> Broker:
        """The broker of the connection this reference belongs to."""
        # References hold their connection through the narrow interface they
        # use; the broker is what implements it (None in tests of a protocol
        # alone, which never ask).
        return cast("Broker", self._connection)

    def _live_connection(self) -> Connection:
        connection = self._connection
        if connection is None or connection.closed:
            reason = connection.close_reason if connection is not None else "no broker"
            raise DeadReference(f"reference to a remote object on a closed connection ({reason})")
        return connection

    async def callRemote(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``remote_<name>(*args, **kwargs)`` on the remote object and return its result.

        Arguments and result cross as plain msgpack data, references,
        registered copies or streams. Raises `RemoteError` (or the exception
        itself when its class is a registered copyable) if the method raised,
        `NoSuchMethod`, `TooManyCalls`, `DeadReference` at once if the
        connection is already closed, `ConnectionLost` if it closes before
        the answer, `LimitExceeded` or `TypeError` if the call cannot be
        encoded (nothing is sent then). Cancelling the caller sends a cancel
        to the peer, which cancels the method's task; a late answer is
        dropped.
        """
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._live_connection()  # raises DeadReference
        return await connection._call(self._object_id, name, args, kwargs)

    async def start_call(self, name: str, /, *args: Any, **kwargs: Any) -> PendingCall:
        """Send the call of `callRemote` without waiting for its answer.

        Returns once the call is sent, with a `PendingCall` that receives the
        answer: ``await call.wait()`` for it later, or have a callback run when
        it comes and wait meanwhile for whatever else the caller needs. The
        errors of `callRemote` are raised by this method (nothing was sent) or
        by the call's ``result()``. Unlike most async functions it is only a
        cancel point, not a schedule point, unless the send queue is full: the
        caller is expected to wait for something next, which is one.
        """
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._live_connection()  # raises DeadReference
        return await connection._start_pending_call(self._object_id, name, args, kwargs)

    async def sendRemote(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        """Call ``remote_<name>`` without waiting for, or getting, an answer.

        Returns once the message is queued for sending. The peer logs a
        failure of the method; the caller never hears of it.
        """
        await self._live_connection()._send_one_way(self._object_id, name, args, kwargs)

    def remoteMethod(self, name: str) -> Callable[..., Awaitable[Any]]:
        """A callable that calls ``remote_<name>`` with the arguments it gets."""

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.callRemote(name, *args, **kwargs)

        return call

    def notifyOnDisconnect(self, callback: Callable[[RemoteReference], object]) -> None:
        """Call ``callback(self)`` when the connection closes.

        Runs at once if it is already closed. Exceptions from the callback are
        logged and otherwise ignored.
        """
        connection = self._connection
        if connection is not None and connection.closed:
            run_callback(callback, self)
        else:
            self._disconnect_callbacks.append(callback)

    def dontNotifyOnDisconnect(self, callback: Callable[[RemoteReference], object]) -> None:
        """Undo `notifyOnDisconnect`; a callback not registered is ignored."""
        try:
            self._disconnect_callbacks.remove(callback)
        except ValueError:
            pass

    def _disconnected(self) -> None:
        callbacks, self._disconnect_callbacks = self._disconnect_callbacks, []
        for callback in callbacks:
            run_callback(callback, self)

    def __repr__(self) -> str:
        return f"<RemoteReference to object {self._object_id}>"


def run_callback(callback: Callable[..., object], *args: Any) -> None:
    """Run a disconnect callback, logging instead of raising its exceptions."""
    try:
        callback(*args)
    except Exception:
        logger.exception("rpc: disconnect callback %r failed", callback)


class ExportEntry:
    """An object we export: the object and how many times we sent it."""

    __slots__ = ("count", "obj")

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.count = 0


class ImportEntry(weakref.ref[RemoteReference]):
    """Our entry for an imported object id: a weak reference plus the receive count.

    ``callback(entry)`` runs when the reference is garbage collected.
    """

    __slots__ = ("count", "object_id")

    def __new__(cls, ref: RemoteReference, callback: Callable[[ImportEntry], object],
                object_id: int) -> ImportEntry:
        return super().__new__(cls, ref, callback)

    def __init__(self, ref: RemoteReference, callback: Callable[[ImportEntry], object],
                 object_id: int) -> None:
        # weakref.ref.__init__ only checks the arguments __new__ took: not called.
        self.object_id = object_id
        self.count = 1
