"""``Server``: accepts connections on listeners and runs an ``HTTPConnection`` for each.

It caps how many connections are open (beyond ``Limits.max_connections`` a
client gets a 503 and the connection closes), sweeps idle ones (one pass per
tick instead of a timer per request, see ``HTTPConnection.expire_if_idle``),
and stops gracefully: on ``stop()`` the listeners close at once, idle
connections close, and requests in flight get ``drain_timeout`` to finish.
An accept error (EMFILE and friends) is logged and retried after a pause.
On a ``ProxyProtocolListener`` each connection's PROXY header is read first
(``_proxy_protocol``); ``replace_handler`` is how a reload reaches open
connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from trioweb.address import Address, UNIXAddress, address_from_sockname
from trioweb.http._connection import Handler, HTTPConnection
from trioweb.http._limits import Limits
from trioweb.http._proxy_protocol import ProxyProtocolError, is_proxied, proxied_addresses
from trioweb.http._writer import error_response

log = logging.getLogger("trioweb.http")


async def accept_forever(listener: trio.abc.Listener[Any], dispatch: Callable[[trio.abc.Stream], None]) -> None:
    """Accept connections until cancelled, handing each to ``dispatch``.

    An accept error (EMFILE and friends) is logged and retried after a pause
    instead of spinning or ending the server.
    """
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            log.warning("accept failed: %s", exc)
            await trio.sleep(0.1)
            continue
        dispatch(stream)


def _stream_addresses(stream: trio.abc.Stream) -> tuple[Address, Address, bool]:
    """(client, host, is_secure) of an accepted stream."""
    secure = isinstance(stream, trio.SSLStream)
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(transport, trio.SocketStream):
        raise OSError("a listener gave a stream that is not a socket")
    sock = transport.socket
    family = sock.family.name
    try:
        client = address_from_sockname(family, sock.getpeername())
    except OSError:
        client = UNIXAddress(None)
    host = address_from_sockname(family, sock.getsockname())
    return client, host, secure


class Server:
    """Serves HTTP on listeners until ``stop()``: each request head goes to
    ``handler``; see the module docstring."""

    def __init__(self, handler: Handler, listeners: list[trio.abc.Listener[Any]], limits: Limits, *,
                 server_header: bytes = b"trioweb") -> None:
        self.handler = handler
        self.listeners = listeners
        self.limits = limits
        self.server_header = server_header
        self.connections: set[HTTPConnection] = set()
        self._stopping = trio.Event()
        self._drained = trio.Event()  # set once stopping and the last connection has closed
        self._accept_scope = trio.CancelScope()
        self._busy = error_response(503, server_header, b"")

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as connections:
            with self._accept_scope:
                async with trio.open_nursery() as acceptors:
                    for listener in self.listeners:
                        acceptors.start_soon(self._accept_loop, listener, connections)
                    acceptors.start_soon(self._expire_idle_connections)
                    task_status.started()
                    await self._stopping.wait()
                    acceptors.cancel_scope.cancel()
            for listener in self.listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()
            for conn in list(self.connections):
                conn.close_if_idle()
            if not self.connections:
                self._drained.set()
            with trio.move_on_after(self.limits.drain_timeout):
                await self._drained.wait()
            connections.cancel_scope.cancel()

    async def _expire_idle_connections(self) -> None:
        """Close connections idle past their timeout (one sweep per tick, not a timer per request)."""
        limits = self.limits
        tick = min(1.0, limits.keepalive_timeout / 4, limits.header_timeout / 4)
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for conn in list(self.connections):
                conn.expire_if_idle(now)

    def replace_handler(self, handler: Handler) -> None:
        """Send every request head from now on to ``handler``, on open
        connections too (a reload); requests in flight keep theirs."""
        self.handler = handler
        for conn in self.connections:
            conn.handler = handler

    def stop(self) -> None:
        """Begin a graceful stop: no new connections, finish what is in flight."""
        self._stopping.set()

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        proxied = is_proxied(listener)

        def dispatch(stream: trio.abc.Stream) -> None:
            if len(self.connections) >= self.limits.max_connections:
                nursery.start_soon(self._refuse, stream)
            else:
                nursery.start_soon(self._serve_connection, stream, proxied)

        await accept_forever(listener, dispatch)

    async def _refuse(self, stream: trio.abc.Stream) -> None:
        with trio.move_on_after(1):
            try:
                await stream.send_all(self._busy)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.abc.Stream, proxied: bool = False) -> None:
        try:
            client, host, secure = _stream_addresses(stream)
            if proxied:
                client, host = await proxied_addresses(stream, client, host, self.limits.header_timeout)
        except (OSError, ProxyProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            if isinstance(exc, ProxyProtocolError):
                log.info("connection from %s closed: %s", client, exc)
            await trio.aclose_forcefully(stream)
            return
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(self.limits.header_timeout):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                await trio.aclose_forcefully(stream)
                return
        conn = HTTPConnection(
            stream,
            self.handler,
            self.limits,
            client=client,
            host=host,
            is_secure=secure,
            server_header=self.server_header,
        )
        self.connections.add(conn)
        if self._stopping.is_set():
            conn.draining = True
        try:
            await conn.run()
        except Exception:
            log.exception("connection from %s failed", client)
        finally:
            self.connections.discard(conn)
            if self._stopping.is_set() and not self.connections:
                self._drained.set()
