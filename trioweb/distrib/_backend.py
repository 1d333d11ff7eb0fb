"""The front's connection to one personal server, shared by the requests forwarded to it.

A ``Backend`` opens its rpc connection on first use and keeps it in a system
task (the connection outlives the request that opened it), shares it between
concurrent requests, and reopens it after a failure. After a failed connect
the backend is taken as down for a short, growing while (0.5 s up to 10 s):
requests get a fast failure instead of each waiting on a dead socket. A
connect refused at once (no one listening: a personal server restarting)
keeps the delay at 0.5 s; only a backend that hangs or breaks the handshake
backs off further. A UNIX socket that is a new file since the failure (the
personal server was restarted) ends the delay at once.

A backend on another machine (``ssl:HOST:PORT``, with the ``tls`` context
to reach it) is connected over TLS, its certificate checked before the
connection is used (``_remote.open_tls``); a bad certificate is a failed
connect like any other (502, the reason in the log and the status).

On each connection the front offers one root object, ``Responses``: the
personal server sends it the head of each streamed response, naming the
request by the token the request carried.

The front's view of each backend is one ``BackendStatus`` (``Backend.status``):
up or down, its last error and when, its requests in flight, how many of its
requests got 502, 503 and 504. It is the one place a status page reads.

Every log line the personal server can cause goes through ``remote_log``
(a ``RateLimitedLog``) keyed by the backend: a backend that misbehaves as
fast as it can writes a few lines a minute, not a line per message.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

import rpc
from trioweb.distrib._messages import enlarge_socket_buffers
from trioweb.distrib._peer_checks import Refused
from trioweb.distrib._remote import open_tcp, open_tls
from trioweb.endpoints import ClientEndpoint, SSLClientEndpoint, UNIXClientEndpoint
from trioweb.http import RateLimitedLog

log = logging.getLogger("trioweb.distrib")
# Lines a personal server (or the clients of one) can cause, keyed by backend.
remote_log = RateLimitedLog(log)
rpc_log = logging.getLogger("rpc")  # the lines of the rpc connections, rate-limited the same way

CONNECT_TIMEOUT = 3.0
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 10.0
LATENCY_SAMPLES = 1024  # the recent response times a backend's percentiles are taken from


class BackendUnavailable(Exception):
    """No usable connection to the personal server (the message says why).

    ``timed_out`` tells a backend that did not answer in time (504) from one
    that refused or is missing (502).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class BackendStatus:
    """The front's view of one backend, for a status page (see the module docstring).

    ``state`` is ``"new"`` (never tried), ``"up"`` (connected) or ``"down"``
    (the last connect failed, or the connection was closed for a fault);
    ``last_error`` says why, ``last_error_at`` when (``time.time()``).
    ``in_flight`` counts requests waiting for their response head,
    ``requests`` every request forwarded (or refused) since the front
    started; ``head_seconds`` keeps how long the last ``LATENCY_SAMPLES``
    responses took to start (``latency(0.99)``), ``head_seconds_sum`` and
    ``heads`` all of them. ``circuit`` is the state of the backend's
    circuit breaker (``closed``, ``open``, ``half-open``; see ``_breaker``).
    """

    __slots__ = ("_in_flight", "bad_gateway", "circuit", "gateway_timeout", "head_seconds", "head_seconds_sum", "heads",
                 "last_error", "last_error_at", "name", "overloaded", "requests", "state")

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "new"
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.bad_gateway = 0  # 502s (and 500s of a publisher that raised)
        self.overloaded = 0  # 503s
        self.gateway_timeout = 0  # 504s
        self._in_flight: Callable[[], int] = lambda: 0
        self.requests = 0
        self.circuit = "closed"
        self.head_seconds: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.head_seconds_sum = 0.0
        self.heads = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight()

    def count_in_flight(self, counter: Callable[[], int]) -> None:
        """Where ``in_flight`` is read from (the backend's ``Admission``)."""
        self._in_flight = counter

    def error(self, reason: str, *, down: bool = False) -> None:
        self.last_error, self.last_error_at = reason, time.time()
        if down:
            self.state = "down"

    def answered(self, code: int) -> None:
        """Count an error answer given for this backend."""
        if code == 503:
            self.overloaded += 1
        elif code == 504:
            self.gateway_timeout += 1
        elif code >= 500:
            self.bad_gateway += 1

    def observe(self, seconds: float) -> None:
        """A response head came ``seconds`` after its request was forwarded."""
        self.head_seconds.append(seconds)
        self.head_seconds_sum += seconds
        self.heads += 1

    def latency(self, quantile: float) -> float | None:
        """The ``quantile`` (0.5, 0.99) of the recent times to a response head; None before any."""
        if not self.head_seconds:
            return None
        ordered = sorted(self.head_seconds)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "circuit": self.circuit, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "in_flight": self.in_flight,
                "requests": self.requests, "502": self.bad_gateway, "503": self.overloaded,
                "504": self.gateway_timeout, "p50": self.latency(0.5), "p99": self.latency(0.99)}


class ResponseSink:
    """Where the head and body stream of one request's streamed response arrive."""

    __slots__ = ("arrived", "body", "deadline", "head", "overdue")

    def __init__(self, deadline: float) -> None:
        self.head: Any = None
        self.body: rpc.StreamReceiver | None = None
        self.arrived = trio.Event()  # the head came, or the call's answer did, or the deadline passed
        self.deadline = deadline  # trio time by which the head or the answer must have come
        self.overdue = False  # set (with arrived) when the deadline passed first


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
    response), or a ``response`` message of another shape, is a broken
    protocol: the connection is closed, as for a malformed head, which fails
    that backend's requests in flight (502), and ``violation`` says why. It is
    never an exception from the method: rpc would log each one, and a
    backend sending them in a loop would fill the front's log.
    """

    def __init__(self, on_violation: Callable[[str], None], head_timeout: float = math.inf) -> None:
        self.on_violation = on_violation  # told once, before the connection closes
        self.head_timeout = head_timeout  # see expire_overdue
        # By token, in the order sent; entries leave as their requests end.
        self.waiting: dict[int, ResponseSink] = {}
        self._next_token = 1
        # Cancels the task that holds the connection open (see Backend._own).
        self.connection_scope = trio.CancelScope()
        self.violation: str | None = None

    def new_token(self) -> int:
        """A token for a new request, to `expect` its response under once the request is sent."""
        token = self._next_token
        self._next_token = token + 1
        return token

    def expect(self, token: int) -> ResponseSink:
        """Where the response of the request just sent under ``token`` will
        arrive, due within ``head_timeout`` from now; `forget` it when done.
        (Called right after the request was written: the response cannot have come yet.)"""
        sink = self.waiting[token] = ResponseSink(trio.current_time() + self.head_timeout)
        return sink

    async def expire_overdue(self) -> None:
        """Mark ``overdue`` (and wake) each request whose head or answer has not
        come ``head_timeout`` after it was forwarded, at that moment.

        One timer for the connection instead of a cancel scope and a deadline
        per request. It stays exact: every request gets the same timeout and
        requests are expected in the order they are sent, so ``waiting`` (in
        that order) is sorted by deadline: the timer sleeps until the
        first deadline not yet reached, or for a whole ``head_timeout`` when
        nothing waits (a request forwarded meanwhile has a later deadline).
        """
        while True:
            now = trio.current_time()
            wake = now + self.head_timeout
            for sink in self.waiting.values():
                if sink.arrived.is_set():
                    continue  # its head came: its body's waits have their own timeout
                if sink.deadline > now:
                    wake = sink.deadline
                    break
                sink.overdue = True
                sink.arrived.set()
            await trio.sleep_until(wake)

    def forget(self, token: int) -> None:
        del self.waiting[token]

    def remote_response(self, *args: Any, **kwargs: Any) -> None:
        """The head and body stream of the response of the request ``token`` names:
        ``response(token, head, body)``; anything else closes the connection."""
        if len(args) == 3 and not kwargs:
            token, head, body = args
            if type(token) is int and isinstance(body, rpc.StreamReceiver):
                sink = self.waiting.get(token)
                if sink is None and 0 < token < self._next_token:
                    return  # its request ended first; dropping the stream stops its producer
                if sink is not None and not sink.arrived.is_set():
                    sink.head, sink.body = head, body
                    sink.arrived.set()
                    return
        if self.violation is None:
            self.violation = "unexpected response message"
            self.on_violation(self.violation)
        self.connection_scope.cancel()


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
        tls: ssl.SSLContext | None = None,
        head_timeout: float = math.inf,
    ) -> None:
        if isinstance(endpoint, SSLClientEndpoint) and tls is None:
            raise ValueError(f"{endpoint} needs a TLS context")
        self.endpoint = endpoint
        self.tls = tls
        self._name = str(endpoint)
        self.head_timeout = head_timeout  # past it, a request without a response head is overdue (504)
        self.before_connect = before_connect
        self.check_peer = check_peer
        # One open file per answer: a file body passed by the personal server (see _passed_file).
        self.limits = limits if limits is not None else rpc.Limits(max_fds=1)
        self.connect_timeout = connect_timeout  # past it, a backend accepting but not answering is 504
        self._broker: rpc.Broker | None = None
        self._root: rpc.RemoteReference | None = None  # the publisher, on _broker
        self._responses: Responses | None = None  # our root on _broker
        self._lock = trio.Lock()
        self._failures = 0
        self._down_until = 0.0
        self._failed_socket: tuple[int, int, int] | None = None  # the socket file that failed
        self.status = BackendStatus(str(endpoint))

    def describe(self) -> str:
        return self._name

    def connected(self) -> tuple[rpc.RemoteReference, Responses] | None:
        """What `connection` returns if the connection is open, else None (no await)."""
        if self._root is None or self._responses is None or self._broker is None or self._broker.closed:
            return None
        return self._root, self._responses

    async def connection(self) -> tuple[rpc.RemoteReference, Responses]:
        """The publisher's reference and our root on the same connection, connecting
        if needed; BackendUnavailable if that fails."""
        connected = self.connected()
        if connected is not None:
            return connected
        async with self._lock:
            connected = self.connected()
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
                # Refused at once (no socket, or no one listening yet): a restart in
                # progress, cheap to retry, so the delay does not grow; a backend that
                # hangs or speaks garbage backs off longer and longer.
                refused = isinstance(exc, (ConnectionRefusedError, FileNotFoundError, PermissionError))
                self._failures = 1 if refused else self._failures + 1
                delay = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2 ** (self._failures - 1))
                self._down_until = trio.current_time() + delay
                reason = f"{type(exc).__name__}: {exc}"
                self.status.error(reason, down=True)
                raise BackendUnavailable(f"{self.describe()}: {reason}",
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
        elif isinstance(endpoint, SSLClientEndpoint):
            assert self.tls is not None
            stream = await open_tls(endpoint, self.tls)
        else:
            stream = await open_tcp(endpoint)
        # Bodies are relayed from pipes, spliced on to the client's socket (no copy here).
        responses = Responses(self._violated, self.head_timeout)
        broker = rpc.Broker(stream, responses, limits=self.limits, splice_payloads=True,
                            logger=remote_log.adapter(self.describe(), rpc_log))
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
        connected = self.connected()
        if connected is None:  # closed already: the peer hung up, or broke the protocol
            raise rpc.ConnectionLost(f"closed during the connect: {broker.close_reason}")
        self._failures = 0
        self.status.state = "up"
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
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(responses.expire_overdue)
                        await broker.wait_closed()
                        nursery.cancel_scope.cancel()
            if responses.violation is None and self.status.state == "up":
                # The backend went away (stopped, restarted, or gone idle): connected again on use.
                # (After a fault, "down" stays, with the fault as the last error.)
                self.status.state = "new"
                self.status.error(f"connection closed: {broker.close_reason}")
                log.info("connection to %s closed: %s", self.describe(), broker.close_reason)
        except (rpc.RPCError, OSError, trio.BrokenResourceError) as exc:
            failure.append(exc)
            log.debug("connection to %s failed: %s", self.describe(), exc)  # the request's 502 line says why
        finally:
            if self._broker is broker:
                self._broker = self._root = self._responses = None
            ready.set()

    def _violated(self, reason: str) -> None:
        self.status.error(f"closed: {reason}", down=True)
        remote_log.warning(self.describe(), "closing the connection to %s: it broke the protocol: %s",
                           self.describe(), reason)

    async def drop(self) -> None:
        """Close the connection (after the backend broke the protocol)."""
        broker = self._broker
        if broker is not None:
            self._broker = self._root = self._responses = None
            await broker.aclose()
