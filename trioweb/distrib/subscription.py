"""The front server's side: ``ResourceSubscription``, a leaf that forwards.

``ResourceSubscription("unix", path)`` (Twisted's signature; also
``ResourceSubscription("tcp:host:port")``, ``ResourceSubscription("host",
port)``) forwards every request below it to the personal server there, and
relays the answer.

The connection to a backend is opened on first use, shared by concurrent
requests, and reopened after a failure. After a failed connect the backend is
taken as down for a short, growing while (0.5 s up to 10 s): requests get a
fast 502 instead of each waiting on a dead socket. A UNIX socket that is a new
file since the failure (the personal server was restarted) ends that at once.

At most ``max_in_flight`` (64) requests are in flight to one backend:
forwarded, their response head not yet come. Beyond, requests wait in line
(FIFO, at most ``max_queued``, 256, for at most ``queue_timeout``, 10 s), so
that a hung or flooded personal server holds a bounded share of the front.
A request whose head has come holds no slot: its body is flow-controlled.
See ``_admission``.

What a client sees:

- the backend has ``max_in_flight`` requests waiting for their head and the
  line is full, or this request waited ``queue_timeout`` in it: 503 with
  ``Retry-After: 5`` (the log says which backend and why);
- backend missing, refusing, not the right peer, or not speaking our protocol:
  502 at once; accepting but not completing the handshake within the connect
  timeout (3 s): 504;
- no response head within ``backend_timeout`` (60 s): 504;
- a malformed or disallowed response head: 502, and the connection to that
  backend is dropped; likewise for a streamed response's head that names no
  request waiting for one (see ``_Responses``), which fails the requests in
  flight on that connection;
- the backend raised (a bug in the publisher itself): a generic 500;
- the backend dies after the head was sent, or sends no piece of the body
  for ``backend_timeout``: the client connection is aborted, never passed off
  as a complete response (a clean 502, or 504 for the stall, if no byte of
  the body had been sent yet), and the call is cancelled.

The body streams both ways with flow control, so memory stays bounded
whatever its size. A client that leaves cancels the call, which cancels the
work on the personal server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import outcome
import rpc
import trio

from trioweb._request import Request
from trioweb.distrib._admission import (
    MAX_IN_FLIGHT,
    MAX_QUEUED,
    QUEUE_TIMEOUT,
    RETRY_AFTER,
    Admission,
    BodyStalled,
    Overloaded,
    Slot,
)
from trioweb.distrib._messages import MessageError, decode_response, encode_request, enlarge_socket_buffers
from trioweb.distrib._peer_checks import Refused
from trioweb.distrib._response_checks import BadBackendResponse, check_headers, check_status, cookie_copies
from trioweb.resource import Resource, error_page

log = logging.getLogger("trioweb.distrib")

CONNECT_TIMEOUT = 3.0
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 10.0
# Cookie names a backend may never set: the front's own.
FRONT_COOKIES = frozenset({b"TWISTED_SESSION", b"TWISTED_SECURE_SESSION"})


class BackendUnavailable(Exception):
    """No usable connection to the personal server (the message says why).

    ``timed_out`` tells a backend that did not answer in time (504) from one
    that refused or is missing (502).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _ResponseSink:
    """Where the head and body stream of one request's streamed response arrive."""

    __slots__ = ("head", "body", "arrived")

    def __init__(self) -> None:
        self.head: Any = None
        self.body: rpc.StreamReceiver | None = None
        self.arrived = trio.Event()  # the head came, or the call's answer did


class _Responses(rpc.Referenceable):
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
        self.waiting: dict[int, _ResponseSink] = {}  # by token; entries leave as their requests end
        self._next_token = 1
        # Cancels the task that holds the connection open (see _Backend._own).
        self.connection_scope = trio.CancelScope()

    def expect(self) -> tuple[int, _ResponseSink]:
        """A token for a new request, and where its response will arrive; `forget` it when done."""
        token = self._next_token
        self._next_token = token + 1
        sink = self.waiting[token] = _ResponseSink()
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


class _Backend:
    """One shared rpc connection to one personal server."""

    def __init__(
        self,
        kind: str,
        address: str,
        port: int = 0,
        *,
        before_connect: Callable[[], None] | None = None,
        check_peer: Callable[[rpc.PeerCredentials | None], None] | None = None,
        limits: rpc.Limits | None = None,
    ) -> None:
        self.kind = kind
        self.address = address
        self.port = port
        self.before_connect = before_connect
        self.check_peer = check_peer
        self.limits = limits
        self._broker: rpc.Broker | None = None
        self._root: rpc.RemoteReference | None = None  # the publisher, on _broker
        self._responses: _Responses | None = None  # our root on _broker
        self._lock = trio.Lock()
        self._failures = 0
        self._down_until = 0.0
        self._failed_socket: tuple[int, int, int] | None = None  # the socket file that failed

    def describe(self) -> str:
        return f"unix:{self.address}" if self.kind == "unix" else f"tcp:{self.address}:{self.port}"

    def _connected(self) -> tuple[rpc.RemoteReference, _Responses] | None:
        if self._root is None or self._responses is None or self._broker is None or self._broker.closed:
            return None
        return self._root, self._responses

    async def connection(self) -> tuple[rpc.RemoteReference, _Responses]:
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
                with trio.fail_after(CONNECT_TIMEOUT):
                    return await self._connect()
            except (OSError, Refused, rpc.RPCError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                if self.kind == "unix":
                    self._failed_socket = await trio.to_thread.run_sync(self._socket_identity)
                self._failures += 1
                delay = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2 ** (self._failures - 1))
                self._down_until = trio.current_time() + delay
                raise BackendUnavailable(f"{self.describe()}: {type(exc).__name__}: {exc}",
                                         timed_out=isinstance(exc, trio.TooSlowError)) from exc

    def _socket_identity(self) -> tuple[int, int, int] | None:
        try:
            info = os.lstat(self.address)
        except OSError:
            return None
        # An inode number can be reused at once for the next file; with the
        # change time it names this socket file only.
        return info.st_dev, info.st_ino, info.st_ctime_ns

    async def _socket_replaced(self) -> bool:
        """A UNIX backend whose socket is a new one since the failure (its server
        was restarted) is tried again at once instead of waiting out the delay."""
        if self.kind != "unix":
            return False
        identity = await trio.to_thread.run_sync(self._socket_identity)
        return identity is not None and identity != self._failed_socket

    async def _connect(self) -> tuple[rpc.RemoteReference, _Responses]:
        if self.before_connect is not None:
            # Abandoned if it hangs (a home on a dead NFS server): the connect timeout applies.
            await trio.to_thread.run_sync(self.before_connect, abandon_on_cancel=True)
        if self.kind == "unix":
            stream: trio.abc.Stream = await trio.open_unix_socket(self.address)
            enlarge_socket_buffers(stream)
        else:
            stream = await trio.open_tcp_stream(self.address, self.port)
        # Bodies are relayed from pipes, spliced on to the client's socket (no copy here).
        responses = _Responses()
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

    async def _own(self, broker: rpc.Broker, responses: _Responses, ready: trio.Event,
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


class ResourceSubscription(Resource):
    """Forwards every request below it to a personal server; see the module docstring."""

    isLeaf = True
    stream_request_body = True
    max_request_body = 1024 * 1024 * 1024

    def __init__(
        self,
        host: str,
        port: int | str | None = None,
        *,
        backend_timeout: float = 60.0,
        before_connect: Callable[[], None] | None = None,
        check_peer: Callable[[rpc.PeerCredentials | None], None] | None = None,
        limits: rpc.Limits | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        queue_timeout: float = QUEUE_TIMEOUT,
        max_queued: int = MAX_QUEUED,
        cookie_prefixes: tuple[bytes, ...] = (),
    ) -> None:
        super().__init__()
        if port is None:  # one endpoint string: "unix:PATH" or "tcp:HOST:PORT"
            kind, _, rest = host.partition(":")
            if kind == "unix" and rest:
                host, port = "unix", rest
            elif kind == "tcp" and rest.rpartition(":")[2].isdigit():
                host, port = rest.rpartition(":")[0], int(rest.rpartition(":")[2])
            else:
                raise ValueError(f"backend endpoint {host!r} is not unix:PATH or tcp:HOST:PORT")
        if host == "unix":
            self.backend = _Backend("unix", str(port), before_connect=before_connect,
                                    check_peer=check_peer, limits=limits)
        else:
            self.backend = _Backend("tcp", host, int(port), check_peer=check_peer, limits=limits)  # type: ignore[arg-type]
        self.backend_timeout = backend_timeout
        self.admission = Admission(max_in_flight, queue_timeout, max_queued)  # see _admission
        # Public prefixes that all reach this backend (b"/~alice/", b"/users/alice/"): a
        # cookie set through one of them is also set for the others.
        self.cookie_prefixes = cookie_prefixes

    def render(self, request: Request) -> Any:
        return self._forward(request)

    def _error(self, request: Request, code: int, brief: str,
               detail: str = "The personal server behind this address is not answering properly.") -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return error_page(code, brief, detail)

    async def _forward(self, request: Request) -> bytes | None:
        slot = self.admission.try_enter()
        if slot is None:
            try:
                slot = await self.admission.enter()
            except Overloaded as exc:
                log.warning("503 for %s: %s: %s", request.uri.decode("latin-1"), self.backend.describe(), exc)
                request.setHeader(b"retry-after", RETRY_AFTER)
                return self._error(request, 503, "Service Unavailable",
                                   "The personal server behind this address is busy. Try again in a moment.")
        try:
            try:
                root, responses = await self.backend.connection()
            except BackendUnavailable as exc:
                code, brief = (504, "Gateway Timeout") if exc.timed_out else (502, "Bad Gateway")
                log.warning("%d for %s: %s", code, request.uri.decode("latin-1"), exc)
                return self._error(request, code, brief)
            head = request.channel.head
            if head is None or not head.has_body:
                return await self._exchange(request, root, responses, None, None, slot)
            # The body is pumped from this request's own nursery (not by the rpc
            # connection), so that no read of the client's socket outlives the
            # call: the connection reads what is left after us.
            body = rpc.StreamSender()
            pump_scope = trio.CancelScope()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump_body, request, body, pump_scope)
                # Captured, so that it leaves the nursery as it is, not in an exception group.
                relayed = await outcome.acapture(self._exchange, request, root, responses, body, pump_scope, slot)
            return relayed.unwrap()
        finally:
            slot.release()  # unless the head came: a failure, or the client left

    async def _exchange(self, request: Request, root: rpc.RemoteReference, responses: _Responses,
                        body: rpc.StreamSender | None, pump_scope: trio.CancelScope | None,
                        slot: Slot) -> bytes | None:
        """Call the backend and relay its response: from the call's answer (the
        body in it, or on a stream it carries), or streamed (the head comes to
        ``responses`` first, under this request's token, the answer after the
        body). The token is forgotten however the request ends."""
        length = request.channel.declared_body_size() if body is not None else 0
        token, sink = responses.expect()
        try:
            try:
                call = await root.start_call("request", encode_request(request, length, token), body)
            except Exception as exc:
                if pump_scope is not None:
                    pump_scope.cancel()
                return await self._relay_answer(request, exc)

            def answered() -> None:
                if pump_scope is not None:
                    pump_scope.cancel()  # the backend has answered: it wants no more body
                sink.arrived.set()

            call.add_done_callback(answered)
            relayed = False
            try:
                with trio.move_on_after(self.backend_timeout):
                    await sink.arrived.wait()
                slot.release()  # the head, the answer or the timeout came: no longer in flight
                if not sink.arrived.is_set():
                    log.warning("504 for %s: %s sent no response within %g s", request.uri.decode("latin-1"),
                                self.backend.describe(), self.backend_timeout)
                    return self._error(request, 504, "Gateway Timeout")
                if sink.head is None:
                    try:
                        answer = call.result()
                    except Exception as exc:
                        answer = exc
                    return await self._relay_answer(request, answer)
                response = await self._relay_stream(request, sink)
                # The answer follows a whole body (None); nobody needs to wait for it.
                # After an error page instead (a bad head, a stall), the call is cancelled.
                relayed = response is None
                return response
            finally:
                if not relayed:
                    call.cancel()  # timed out, failed, or the client left: the backend's work stops
        finally:
            responses.forget(token)

    @staticmethod
    async def _pump_body(request: Request, body: rpc.StreamSender, scope: trio.CancelScope) -> None:
        with scope:
            try:
                async for piece in request.body_stream():
                    await body.send_all(piece)
                await body.aclose()
            except rpc.StreamError:
                pass  # the backend stopped reading: it has what it wants
            except Exception as exc:  # the client's body failed: the backend's read fails too
                body.abort(f"{type(exc).__name__}")

    def _apply_head(self, request: Request, message: Any) -> dict[str, Any]:
        response = decode_response(message)
        code, reason = check_status(response.get("status"), response.get("reason"))
        cookie_path = b"/" + b"".join(quote(seg, safe="").encode("ascii") + b"/" for seg in request.prepath)
        headers = check_headers(response.get("headers"), cookie_path, FRONT_COOKIES)
        request.setResponseCode(code, reason)
        for name, value in headers:  # validated by check_headers
            if name == b"set-cookie":
                request.cookies.append(value)
                if cookie_path in self.cookie_prefixes:
                    others = [prefix for prefix in self.cookie_prefixes if prefix != cookie_path]
                    request.cookies.extend(cookie_copies(value, cookie_path, others))
            else:
                request.responseHeaders.add_checked(name, value)
        request.defaultContentType = None  # the backend's headers are the whole story
        if response["length"] is not None:
            request.setHeader(b"content-length", b"%d" % response["length"])
        return response

    async def _relay_answer(self, request: Request, answer: Any) -> bytes | None:
        """Relay the call's answer (or its failure, as an exception)."""
        if isinstance(answer, rpc.RemoteError):
            log.error("the personal server at %s raised %s", self.backend.describe(), answer)
            return self._error(request, 500, "Internal Server Error")
        if isinstance(answer, BaseException):
            log.warning("502 for %s: %s", request.uri.decode("latin-1"), answer)
            return self._error(request, 502, "Bad Gateway")
        try:
            response = self._apply_head(request, answer)
            body = response.get("body")
            stream = response.get("stream")
            if body is None and stream is None:
                raise MessageError("a complete response without a body")
            length = response["length"]
            if body is not None and length is not None and request.method != b"HEAD" and len(body) != length:
                raise MessageError(f"a body of {len(body)} bytes announced as {length}")
        except (MessageError, BadBackendResponse) as exc:
            return await self._refuse(request, exc)
        if stream is not None:
            return await self._relay_body(request, stream)
        return body

    async def _refuse(self, request: Request, exc: Exception) -> bytes:
        log.warning("502 for %s: bad response from %s: %s", request.uri.decode("latin-1"),
                    self.backend.describe(), exc)
        await self.backend.drop()
        return self._bad_gateway(request)

    def _bad_gateway(self, request: Request, code: int = 502, brief: str = "Bad Gateway") -> bytes:
        """A clean 502 (or other error), whatever part of the backend's head was
        already applied: none of the response's headers stay (a backend's
        Content-Encoding or Content-Length would garble our page)."""
        headers = request.responseHeaders
        for name in list(headers):
            headers.removeHeader(name)
        request.cookies.clear()
        return self._error(request, code, brief)

    async def _relay_stream(self, request: Request, sink: _ResponseSink) -> None | bytes:
        try:
            self._apply_head(request, sink.head)
        except (MessageError, BadBackendResponse) as exc:
            return await self._refuse(request, exc)
        assert sink.body is not None
        return await self._relay_body(request, sink.body)

    async def _relay_body(self, request: Request, body: rpc.StreamReceiver) -> None | bytes:
        try:
            while True:
                # Each wait for a piece is bounded: a backend that stalls must not hold the client.
                try:
                    piece = await body.receive_piece(timeout=self.backend_timeout)
                except trio.TooSlowError:
                    raise BodyStalled(f"no piece of the body within {self.backend_timeout:g} s") from None
                if not piece:
                    break
                if type(piece) is bytes:
                    request.write(piece)
                    await request.drain()
                else:
                    await request.sendpipe(piece.fd, piece.size, piece.consumed)
        except (rpc.StreamError, rpc.ConnectionLost, BodyStalled) as exc:
            log.warning("%s failed mid-response for %s: %s", self.backend.describe(),
                        request.uri.decode("latin-1"), exc)
            stalled = isinstance(exc, BodyStalled)
            if stalled:
                await body.aclose()  # its producer stops (the call, if still open, is cancelled too)
            if not request.channel.response_started:  # nothing was written yet
                if stalled:
                    return self._bad_gateway(request, 504, "Gateway Timeout")
                return self._bad_gateway(request)
            # Too late for a status: the Site aborts the client connection.
            raise ConnectionError(f"{self.backend.describe()} failed mid-response") from exc
        request.finish()
        return None
