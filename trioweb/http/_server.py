"""``Server``: accepts connections on listeners and runs an ``HTTPConnection`` for each.

It caps how many connections are open, counted from accept (TLS handshakes
included, each bounded by ``Limits.tls_handshake_timeout``), in total and per
client address (see ``trioweb.http._admission``): over the total, the
longest-idle connection is closed to make room; when none is idle, or over
the address's cap, the client gets a 503 with ``Retry-After``, and a
lingering close so that it can read it (closing with its request unread
would reset the connection). The server sweeps idle connections (one pass per
tick instead of a timer per request, see ``HTTPConnection.expire_if_idle``),
and stops gracefully: on ``stop()`` the listeners close at once, idle
connections close, and requests in flight get ``drain_timeout`` to finish.
An accept error (EMFILE and friends) is logged and retried after a pause.
On a ``ProxyProtocolListener`` each connection's PROXY header is read first
(``_proxy_protocol``); there the peer is the proxy, so only the total cap
applies, not the per-address one. ``replace_handler`` is how a reload reaches open
connections.

With ``take_backlog_at_stop``, what the kernel has already queued on a
listener (connections whose handshake is done) is accepted and served at a
stop before the listener closes, instead of being reset: for a
``--workers`` worker, whose supervisor keeps new connections out first
(``trioweb.cli._workers``), or for a lone server that filters its own
TCP listeners (``trioweb.cli._process``), so that this empties the queue.
A connection whose task starts after the stop gets its first request
answered (``HTTPConnection.stop_after_first_request``).
``accepted`` and ``requests_served()`` count, for a status page.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from trioweb.address import Address, IPv4Address, IPv6Address, UNIXAddress, address_from_sockname
from trioweb.http._admission import Admission
from trioweb.http._connection import MAX_DISCARD, Handler, HTTPConnection, drain_input
from trioweb.http._limits import Limits
from trioweb.http._proxy_protocol import ProxyProtocolError, is_proxied, proxied_addresses
from trioweb.http._ratelimit import RateLimitedLog
from trioweb.http._transport import readable_now, transport_for
from trioweb.http._writer import error_response

log = logging.getLogger("trioweb.http")

# What a refused client is told to wait before trying again, in seconds.
RETRY_AFTER = 5
# A refused connection is drained this long (its request read and dropped) before closing.
REFUSAL_LINGER = 1.0
# Refusals being sent at once at most; beyond, a connection is closed at once
# (a flood must not hold more descriptors than the slots it was refused).
MAX_REFUSALS_IN_FLIGHT = 256
# At a stop, how long to wait for a queued connection another process may have taken first.
BACKLOG_WAIT = 0.05
# At a stop, at most this many queued connections are taken from one listener
# (its usual backlog): clients that keep connecting cannot hold the stop off.
MAX_BACKLOG_TAKEN = 1024
MAX_BACKLOG_SECONDS = 1.0


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


def socket_listener_of(listener: trio.abc.Listener[Any]) -> trio.SocketListener | None:
    """The socket listener under ``listener``'s TLS and PROXY-protocol wrappers, if any."""
    while not isinstance(listener, trio.SocketListener):
        inner = getattr(listener, "transport_listener", None) or getattr(listener, "listener", None)
        if inner is None:
            return None
        listener = inner
    return listener


def _has_backlog(listener: trio.abc.Listener[Any]) -> bool:
    """Whether a connection waits in ``listener``'s accept queue (without waiting)."""
    plain = socket_listener_of(listener)
    return plain is not None and readable_now(plain.socket.fileno())


async def accept_backlog(listener: trio.abc.Listener[Any], dispatch: Callable[[trio.abc.Stream], None]) -> None:
    """Accept, and hand to ``dispatch``, the connections queued on ``listener`` now
    (at most ``MAX_BACKLOG_TAKEN``, for at most ``MAX_BACKLOG_SECONDS``)."""
    with trio.move_on_after(MAX_BACKLOG_SECONDS):
        for _ in range(MAX_BACKLOG_TAKEN):
            if not _has_backlog(listener):
                return
            with trio.move_on_after(BACKLOG_WAIT) as waited:
                try:
                    stream = await listener.accept()
                except (OSError, trio.ClosedResourceError):
                    return
            if not waited.cancelled_caught:  # else another process took it: look again
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


def _address_key(client: Address) -> str | None:
    """What the per-address cap counts by: the IP address (none for UNIX sockets)."""
    if isinstance(client, (IPv4Address, IPv6Address)):
        return client.host
    return None


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
        # Whether a stop takes the accept queue first: only when something else keeps
        # new connections out of it meanwhile (a socket filter), else it never empties.
        self.take_backlog_at_stop = False
        self.accepted = 0  # connections admitted since the start
        self._requests_of_closed = 0  # requests served on connections closed since
        self.admission = Admission(limits.max_connections, limits.max_connections_per_address)
        # Refusals logged at most once a minute per (reason, address): an attacker cannot flood the log.
        self._refusal_log = RateLimitedLog(log, burst=1, period=60.0)
        self._refusals_in_flight = 0
        self._stopping = trio.Event()
        self._drained = trio.Event()  # set once the listeners are closed and the last connection too
        self._listeners_closed = False  # at a stop, after the backlog was taken
        self._accept_scope = trio.CancelScope()
        # Where the tasks of requests run (see ``HTTPConnection.task_host``): set by ``serve``.
        self._task_host: trio.Nursery | None = None
        self._busy = error_response(503, server_header, b"", retry_after=RETRY_AFTER)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as connections:
            self._task_host = connections
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
                    if self.take_backlog_at_stop:
                        await accept_backlog(listener, self._dispatcher(listener, connections))
                    await listener.aclose()
            self._listeners_closed = True
            for conn in list(self.connections):
                conn.close_if_idle()
            if not self.admission.open:  # counted from accept: the backlog just taken too
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

    def requests_served(self) -> int:
        """Requests read since the start, on open connections and closed ones."""
        return self._requests_of_closed + sum(conn._requests_served for conn in self.connections)

    def stop(self) -> None:
        """Begin a graceful stop: no new connections, finish what is in flight."""
        self._stopping.set()

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        await accept_forever(listener, self._dispatcher(listener, nursery))

    def _dispatcher(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> Callable[[trio.abc.Stream], None]:
        """What ``listener``'s accepted connections go to: admission, then a task in ``nursery``."""
        proxied = is_proxied(listener)
        admission = self.admission

        def dispatch(stream: trio.abc.Stream) -> None:
            try:
                client, host, secure = _stream_addresses(stream)
            except OSError:
                nursery.start_soon(trio.aclose_forcefully, stream)
                return
            key = None if proxied else _address_key(client)  # behind a PROXY header the peer is the proxy
            if admission.over_address_cap(key):
                self._refuse(stream, nursery, "address", client)
            elif admission.full() and not self._close_longest_idle():
                self._refuse(stream, nursery, "total", client)
            else:
                admission.enter(key)  # counted from accept, before any TLS handshake
                self.accepted += 1
                nursery.start_soon(self._serve_connection, stream, client, host, secure, key, proxied)

        return dispatch

    def _close_longest_idle(self) -> bool:
        """Close the connection that has waited longest for a request, if any
        waits: a slot for a client with something to ask."""
        longest: HTTPConnection | None = None
        longest_since = math.inf
        for conn in self.connections:
            since = conn.idle_since
            if since is not None and since < longest_since:
                longest, longest_since = conn, since
        if longest is None:
            return False
        longest.close_now_if_idle()
        return True

    def _refuse(self, stream: trio.abc.Stream, nursery: trio.Nursery, reason: str, client: Address) -> None:
        self.admission.refused[reason] += 1
        self._refusal_log.warning((reason, _address_key(client)),
                                  "refusing connections from %s: %s (logged once a minute per address)", client,
                                  "too many from this address" if reason == "address" else "server full, none idle")
        if self._refusals_in_flight >= MAX_REFUSALS_IN_FLIGHT or isinstance(stream, trio.SSLStream):
            # No room even to say so (or a handshake to pay for first): close.
            nursery.start_soon(trio.aclose_forcefully, stream)
        else:
            self._refusals_in_flight += 1  # counted now: a burst of accepts comes before any task runs
            nursery.start_soon(self._send_busy, stream)

    async def _send_busy(self, stream: trio.abc.Stream) -> None:
        """503 with Retry-After, then read and drop the request briefly before
        closing, so that the client reads the answer instead of a reset."""
        try:
            transport = transport_for(stream)
            with trio.move_on_after(REFUSAL_LINGER * 2):
                try:
                    await transport.send_all(self._busy, REFUSAL_LINGER)
                    await drain_input(transport, REFUSAL_LINGER, MAX_DISCARD)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                    pass
        finally:
            self._refusals_in_flight -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.abc.Stream, client: Address, host: Address, secure: bool,
                                key: str | None, proxied: bool) -> None:
        try:
            if proxied:
                try:
                    client, host = await proxied_addresses(stream, client, host, self.limits.header_timeout)
                except (ProxyProtocolError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                    if isinstance(exc, ProxyProtocolError):
                        log.info("connection from %s closed: %s", client, exc)
                    await trio.aclose_forcefully(stream)
                    return
            await self._serve_admitted(stream, client, host, secure)
        finally:
            self.admission.leave(key)
            if self._listeners_closed and not self.admission.open:
                self._drained.set()

    async def _serve_admitted(self, stream: trio.abc.Stream, client: Address, host: Address, secure: bool) -> None:
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(self.limits.tls_handshake_timeout):
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
            task_host=self._task_host,
        )
        self.connections.add(conn)
        if self._stopping.is_set():  # accepted from the backlog, or just before the stop
            conn.stop_after_first_request()
        try:
            await conn.run()
        except Exception:
            log.exception("connection from %s failed", client)
        finally:
            self.connections.discard(conn)
            self._requests_of_closed += conn._requests_served
