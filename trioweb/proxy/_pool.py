"""``Upstream``: where a proxy connects, and its pool of kept-alive connections.

A connection goes back to the pool after an exchange that left it reusable
(see ``_client``) and is taken from it, newest first, for the next request.
The pool is bounded: at most ``max_idle`` connections wait in it (the
oldest is closed to make room), and each for at most ``idle_timeout``
seconds: a system task sleeps until the oldest one's time is up and closes
what has expired, and ends when the pool is empty. Upstream servers close
idle connections too (often after a few seconds); a connection taken from
the pool after more than ``CHECK_AFTER`` idle is first checked for that with
a non-blocking poll (a system call that a busy proxy, whose connections are
idle for milliseconds, spares), and the proxy retries an idempotent request
once if the upstream closed it anyway (the race the check cannot see).

The number of connections in use is not capped here: it follows the
number of requests in flight, which the Site's connection limit bounds.
"""

from __future__ import annotations

import ssl
from collections import deque

import trio

from trioweb.proxy._client import UpstreamConnection

# A connection idle for less than this is not checked before use: no
# upstream closes its idle connections that fast.
CHECK_AFTER = 1.0


class UpstreamUnavailable(Exception):
    """No connection to the upstream could be opened."""

    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Upstream:
    """An upstream server (TCP, TLS over TCP, or a UNIX socket) and its idle connections."""

    def __init__(
        self,
        host: str,
        port: int = 80,
        *,
        unix_path: str | None = None,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        max_idle: int = 64,
        idle_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: deque[UpstreamConnection] = deque()
        self._sweeping = False

    def describe(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Upstream {self.describe()}>"

    # -- connections ------------------------------------------------------------------

    async def connect(self) -> UpstreamConnection:
        """A new connection; ``UpstreamUnavailable`` (timed out or refused) otherwise."""
        stream: trio.abc.Stream
        try:
            with trio.fail_after(self.connect_timeout):
                if self.unix_path is not None:
                    stream = await trio.open_unix_socket(self.unix_path)
                else:
                    stream = await trio.open_tcp_stream(self.host, self.port)
                if self.tls is not None:
                    stream = trio.SSLStream(stream, self.tls, server_hostname=self.host)
                    await stream.do_handshake()
        except trio.TooSlowError:
            raise UpstreamUnavailable(f"{self.describe()}: no connection within {self.connect_timeout:g} s",
                                      timed_out=True) from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise UpstreamUnavailable(f"{self.describe()}: {exc}", timed_out=False) from None
        return UpstreamConnection(stream)

    def take_idle(self) -> UpstreamConnection | None:
        """A kept-alive connection the upstream has not closed, newest first; None if there is none."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if trio.current_time() - connection.idle_since < CHECK_AFTER or connection.looks_alive():
                connection.reused = True
                return connection
            connection.close()
        return None

    def put_back(self, connection: UpstreamConnection) -> None:
        """Keep a connection after an exchange that left it reusable (else close it)."""
        if not connection.reusable or self.max_idle <= 0:
            connection.close()
            return
        if len(self._idle) >= self.max_idle:
            self._idle.popleft().close()
        connection.idle_since = trio.current_time()
        self._idle.append(connection)
        if not self._sweeping:
            self._sweeping = True
            trio.lowlevel.spawn_system_task(self._sweep, name=f"idle connections of {self.describe()}")

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def _sweep(self) -> None:
        """Close connections idle past ``idle_timeout``; ends when none is left."""
        idle = self._idle
        try:
            while idle:
                await trio.sleep_until(idle[0].idle_since + self.idle_timeout)
                now = trio.current_time()
                while idle and idle[0].idle_since + self.idle_timeout <= now:
                    idle.popleft().close()
        finally:
            self._sweeping = False

    def close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()
