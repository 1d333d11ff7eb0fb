"""CONNECT tunnels for ``Proxy``: raw bytes both ways between a client and an upstream.

Theory of operation
-------------------
A client asks ``CONNECT host:port HTTP/1.1`` (authority form) to reach a
server through the proxy, usually to speak TLS to it end to end. The proxy
(``Proxy.render``, which checks the allowlist and loops first) opens a TCP
connection to ``host:port``, answers ``200 Connection established``, and
from then on the client's connection carries no HTTP: the engine hands it
over (``HTTPConnection.take_over_stream``) with any bytes the client sent
early, and ``relay_bytes`` copies each side's bytes to the other.

- Backpressure and bounded memory: each direction holds at most one read
  (``READ_SIZE``) at a time, and reads again only once the other side has
  taken it, so a slow reader throttles its writer through TCP.
- Idle timeout: the tunnel ends when no byte has moved either way for
  ``idle_timeout`` (one clock for both ways: a download whose client says
  nothing is not idle), or when a side stops taking bytes for as long.
- Either side ending (EOF, reset, error) ends the tunnel: both connections
  are closed, as nginx's stream proxy does by default (no half-close:
  a half-closed side could hold the other open until the idle timeout).

Failures before the 200 are ordinary answers: 502 when the connection is
refused or the host unknown, 504 when it does not connect within the
connect timeout.
"""

from __future__ import annotations

import logging
import re

import trio

from trioweb._request import Request
from trioweb.http import ConnectionLost, HTTPConnection, Transport
from trioweb.proxy._pool import Upstream, UpstreamUnavailable
from trioweb.proxy._relay import error_page

log = logging.getLogger("trioweb.proxy")

READ_SIZE = 65536
# host:port, the host a name, an IPv4 address or a bracketed IPv6 literal.
_AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%]+):([0-9]{1,5})\Z")


def parse_authority(target: bytes) -> tuple[str, int] | None:
    """``(host, port)`` of a CONNECT target (``host:port``), or None if it is not one."""
    match = _AUTHORITY.match(target)
    if match is None:
        return None
    port = int(match.group(2))
    if not 0 < port < 65536:
        return None
    return match.group(1).strip(b"[]").decode("ascii").lower(), port


def can_take_over(request: Request) -> bool:
    """The request came on a client connection of ours (not relayed by a front
    server, whose channel carries no raw bytes)."""
    return isinstance(request.channel, HTTPConnection)


async def tunnel(request: Request, upstream: Upstream, idle_timeout: float) -> bytes | None:
    """Connect to ``upstream``, answer 200, relay until either side ends; an error page if it cannot connect."""
    channel = request.channel
    assert isinstance(channel, HTTPConnection)
    try:
        connection = await upstream.connect()
    except UpstreamUnavailable as exc:
        code = 504 if exc.timed_out else 502
        log.warning("%d for CONNECT %s: %s", code, request.uri.decode("latin-1"), exc)
        return error_page(request, code)
    try:
        request.setResponseCode(200, b"Connection established")
        client, early = await channel.take_over_stream(200, b"Connection established", [])
        await relay_bytes(client, connection.transport, early, idle_timeout)
    except ConnectionLost:
        pass
    finally:
        connection.close()
    request.finish()  # logs the tunnel; the engine closes the client's connection
    return None


class _Clock:
    """The tunnel's idle clock: a byte moving either way winds it up again."""

    __slots__ = ("last", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.last = trio.current_time()

    def left(self) -> float:
        return max(self.last + self.timeout - trio.current_time(), 0.0)


async def relay_bytes(client: Transport, upstream: Transport, early: bytes, idle_timeout: float) -> None:
    """Copy bytes both ways (``early`` to the upstream first) until either side
    ends, errs, or the tunnel is idle for ``idle_timeout``. Never raises for
    I/O errors; closes nothing (the callers own the connections)."""
    clock = _Clock(idle_timeout)
    async with trio.open_nursery() as nursery:

        async def pump(source: Transport, sink: Transport, first: bytes) -> None:
            try:
                if first:
                    await sink.send_all(first, idle_timeout)
                while True:
                    try:
                        data = await source.receive(READ_SIZE, clock.left())
                    except trio.TooSlowError:
                        if clock.left() > 0:
                            continue  # the other way moved meanwhile
                        return
                    if not data:
                        return
                    clock.last = trio.current_time()
                    await sink.send_all(data, idle_timeout)
                    clock.last = trio.current_time()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                return
            finally:
                nursery.cancel_scope.cancel()  # one way ending ends the tunnel

        nursery.start_soon(pump, client, upstream, early)
        nursery.start_soon(pump, upstream, client, b"")
