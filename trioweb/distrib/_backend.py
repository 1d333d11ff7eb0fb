"""The front's connection to one personal server, shared by the requests forwarded to it.

A ``Backend`` opens its rpc connection on first use and keeps it in a system
task (the connection outlives the request that opened it), shares it between
concurrent requests, and reopens it after a failure. After a failed connect
the backend is taken as down for a short, growing while (0.5 s up to 10 s):
requests get a fast failure instead of each waiting on a dead socket. A UNIX
socket that is a new file since the failure (the personal server was
restarted) ends that at once.

On each connection the front offers one root object, ``Responses``: the
personal server sends it the head of each streamed response, naming the
request by the token the request carried.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio

import rpc
from trioweb.distrib._messages import MessageError, enlarge_socket_buffers
from trioweb.distrib._peer_checks import Refused
from trioweb.endpoints import ClientEndpoint, UNIXClientEndpoint

log = logging.getLogger("trioweb.distrib")

CONNECT_TIMEOUT = 3.0
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 10.0


class BackendUnavailable(Exception):
    """No usable connection to the personal server (the message says why).

    ``timed_out`` tells a backend that did not answer in time (504) from one
    that refused or is missing (502).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class ResponseSink:
    """Where the head and body stream of one request's streamed response arrive."""

    __slots__ = ("arrived", "body", "head")

    def __init__(self) -> None:
        self.head: Any = None
        self.body: rpc.StreamReceiver | None = None
        self.arrived = trio.Event()  # the head came, or the call's answer did


class Responses(rpc.Referenceable):
    """The front's root on one backend connection: the personal server sends
    it the head of each streamed response, ``response(token, head, body)``,
    naming the request by the token it came with.

    One object per connection instead of one per request spares each request
    an export, a reference on the other side and its release. A personal
    server can only ever reach its own requests on its own connection. A
    response for a request that has just ended (timed out, or its client
    left, while the response was on its way) is dropped. Any other response
    that names no request waiting for its head (a token never given, a second
    response) is a broken protocol: ``MessageError``, and the connection is
    closed, as for a malformed head, which fails that backend's requests in
    flight (502).
    """

    def __init__(self) -> None:
        self.waiting: dict[int, ResponseSink] = {}  # by token; entries leave as their requests end
        self._next_token = 1
        # Cancels the task that holds the connection open (see Backend._own).
        self.connection_scope = trio.CancelScope()

    def expect(self) -> tuple[int, ResponseSink]:
        """A token for a new request, and where its response will arrive; `forget` it when done."""
        token = self._next_token
        self._next_token = token + 1
        sink = self.waiting[token] = ResponseSink()
        return token, sink

    def forget(self, token: int) -> None:
        del self.waiting[token]

    def remote_response(self, token: Any, head: Any, body: Any) -> None:
        """The head and body stream of the response of the request ``token`` names."""
        if type(token) is int and isinstance(body, rpc.StreamReceiver):
            sink = self.waiting.get(token)
            if sink is None and 0 < token < self._next_token:
                return  # its request ended first; dropping the stream stops its producer
            if sink is not None and not sink.arrived.is_set():
                sink.head, sink.body = head, body
                sink.arrived.set()
                return
        self.connection_scope.cancel()
        raise MessageError("unexpected response message")


class Backend:
    """One shared rpc connection to one personal server."""

    def __init__(
        self,
        endpoint: ClientEndpoint,
        *,
        before_connect: Callable[[], None] | None = None,
        check_peer: Callable[[rpc.PeerCredentials | None], None] | None = None,
        limits: rpc.Limits | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self.before_connect = before_connect
        self.check_peer = check_peer
        self.limits = limits
        self.connect_timeout = connect_timeout  # past it, a backend accepting but not answering is 504
        self._broker: rpc.Broker | None = None
        self._root: rpc.RemoteReference | None = None  # the publisher, on _broker
        self._responses: Responses | None = None  # our root on _broker
        self._lock = trio.Lock()
        self._failures = 0
        self._down_until = 0.0
        self._failed_socket: tuple[int, int, int] | None = None  # the socket file that failed

    def describe(self) -> str:
        return str(self.endpoint)

    def _connected(self) -> tuple[rpc.RemoteReference, Responses] | None:
        if self._root is None or self._responses is None or self._broker is None or self._broker.closed:
            return None
        return self._root, self._responses

    async def connection(self) -> tuple[rpc.RemoteReference, Responses]:
        """The publisher's reference and our root on the same connection, connecting
        if needed; BackendUnavailable if that fails."""
        connected = self._connected()
        if connected is not None:
            return connected
        async with self._lock:
            connected = self._connected()
            if connected is not None:
                return connected
            if trio.current_time() < self._down_until and not await self._socket_replaced():
                raise BackendUnavailable(f"{self.describe()} failed recently; retrying later")
            try:
                with trio.fail_after(self.connect_timeout):
                    return await self._connect()
            except (OSError, Refused, rpc.RPCError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                if isinstance(self.endpoint, UNIXClientEndpoint):
                    self._failed_socket = await trio.to_thread.run_sync(self._socket_identity)
                self._failures += 1
                delay = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2 ** (self._failures - 1))
                self._down_until = trio.current_time() + delay
                raise BackendUnavailable(f"{self.describe()}: {type(exc).__name__}: {exc}",
                                         timed_out=isinstance(exc, trio.TooSlowError)) from exc

    def _socket_identity(self) -> tuple[int, int, int] | None:
        assert isinstance(self.endpoint, UNIXClientEndpoint)
        try:
            info = os.lstat(self.endpoint.path)
        except OSError:
            return None
        # An inode number can be reused at once for the next file; with the
        # change time it names this socket file only.
        return info.st_dev, info.st_ino, info.st_ctime_ns

    async def _socket_replaced(self) -> bool:
        """A UNIX backend whose socket is a new one since the failure (its server
        was restarted) is tried again at once instead of waiting out the delay."""
        if not isinstance(self.endpoint, UNIXClientEndpoint):
            return False
        identity = await trio.to_thread.run_sync(self._socket_identity)
        return identity is not None and identity != self._failed_socket

    async def _connect(self) -> tuple[rpc.RemoteReference, Responses]:
        if self.before_connect is not None:
            # Abandoned if it hangs (a home on a dead NFS server): the connect timeout applies.
            await trio.to_thread.run_sync(self.before_connect, abandon_on_cancel=True)
        endpoint = self.endpoint
        if isinstance(endpoint, UNIXClientEndpoint):
            stream: trio.abc.Stream = await trio.open_unix_socket(endpoint.path)
            enlarge_socket_buffers(stream)
        else:
            stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        # Bodies are relayed from pipes, spliced on to the client's socket (no copy here).
        responses = Responses()
        broker = rpc.Broker(stream, responses, limits=self.limits, splice_payloads=True)
        try:
            if self.check_peer is not None:
                self.check_peer(broker.peer_credentials())  # before a byte is sent
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        ready = trio.Event()
        failure: list[BaseException] = []
        trio.lowlevel.spawn_system_task(self._own, broker, responses, ready, failure)
        await ready.wait()
        if failure:
            raise failure[0]
        connected = self._connected()
        if connected is None:  # closed already: the peer hung up, or broke the protocol
            raise rpc.ConnectionLost(f"closed during the connect: {broker.close_reason}")
        self._failures = 0
        return connected

    async def _own(self, broker: rpc.Broker, responses: Responses, ready: trio.Event,
                   failure: list[BaseException]) -> None:
        """The task that holds the connection open while it is in use (a system task:
        the connection outlives the request that opened it), until the connection
        closes or ``responses`` cancels it."""
        try:
            with responses.connection_scope:
                async with broker:
                    root = await broker.getRootObject()
                    self._broker, self._root, self._responses = broker, root, responses
                    ready.set()
                    await broker.wait_closed()
            violated = responses.connection_scope.cancel_called
            log.info("connection to %s closed: %s", self.describe(),
                     "a response for no waiting request" if violated else broker.close_reason)
        except (rpc.RPCError, OSError, trio.BrokenResourceError) as exc:
            failure.append(exc)
            log.info("connection to %s failed: %s", self.describe(), exc)
        finally:
            if self._broker is broker:
                self._broker = self._root = self._responses = None
            ready.set()

    async def drop(self) -> None:
        """Close the connection (after the backend broke the protocol)."""
        broker = self._broker
        if broker is not None:
            self._broker = self._root = self._responses = None
            await broker.aclose()
