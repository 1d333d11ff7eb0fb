"""The front server's side: ``ResourceSubscription``, a leaf that forwards.

``ResourceSubscription("unix", path)`` (Twisted's signature; also
``ResourceSubscription("host", port)`` and an endpoint string,
``ResourceSubscription("tcp:host:port")``, see ``trioweb.endpoints``;
``ResourceSubscription("ssl:host:port:sha256=HEX", tls=context)`` over TLS,
see ``_remote``; or a parsed ``ClientEndpoint``) forwards every request
below it to the personal server there, and relays the answer.

The connection to a backend is opened on first use, shared by concurrent
requests, and reopened after a failure, with a fast 502 for a while after a
failed connect (see ``_backend``). A backend whose requests fail
repeatedly (timeouts, bad responses: not failed connects) is answered 502 at
once, with ``Retry-After``, for a short, growing while, then probed with one
request (its circuit breaker, ``_breaker``).

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
  request waiting for one (see ``Responses``), which fails the requests in
  flight on that connection;
- the backend raised (a bug in the publisher itself): a generic 500;
- the client's request body is malformed, too large or stalls (its
  framing error, not the backend's): 400, 413 or 408, logged as the
  client's, and the call is cancelled;
- the backend dies after the head was sent, or sends no piece of the body
  for ``backend_timeout``: the client connection is aborted, never passed off
  as a complete response (a clean 502, or 504 for the stall, if no byte of
  the body had been sent yet), and the call is cancelled.

The body streams both ways with flow control, so memory stays bounded
whatever its size. A client that leaves cancels the call, which cancels the
work on the personal server.

Every error answered is counted in the backend's ``BackendStatus``
(``status``), and logged through a rate-limited log keyed by the backend
(or, for a client's own error, by the client's address): no one on the other
side of a socket can flood the front's log.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import outcome
import trio

import rpc
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
from trioweb.distrib._backend import (
    CONNECT_TIMEOUT,
    Backend,
    BackendStatus,
    BackendUnavailable,
    Responses,
    ResponseSink,
    remote_log,
)
from trioweb.distrib._breaker import FIRST_DELAY, THRESHOLD, CircuitBreaker
from trioweb.distrib._messages import ForwardedRequest, ForwardedResponse, MessageError
from trioweb.distrib._passed_file import unsendable
from trioweb.distrib._response_checks import BadBackendResponse, check_headers, check_status, cookie_copies
from trioweb.endpoints import ClientEndpoint, TCPClientEndpoint, UNIXClientEndpoint, parse_client_endpoint
from trioweb.http import BodyTimeout, BodyTooLarge, ConnectionLost, ParseError
from trioweb.resource import Resource, render_error

__all__ = ["ResourceSubscription"]

log = logging.getLogger("trioweb.distrib")

# Cookie names a backend may never set: the front's own.
FRONT_COOKIES = frozenset({b"TWISTED_SESSION", b"TWISTED_SECURE_SESSION"})


class ResourceSubscription(Resource):
    """Forwards every request below it to a personal server; see the module docstring."""

    isLeaf = True
    stream_request_body = True
    max_request_body = 1024 * 1024 * 1024

    def __init__(
        self,
        host: str | ClientEndpoint,
        port: int | str | None = None,
        *,
        backend_timeout: float = 60.0,
        before_connect: Callable[[], None] | None = None,
        check_peer: Callable[[rpc.PeerCredentials | None], None] | None = None,
        limits: rpc.Limits | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        queue_timeout: float = QUEUE_TIMEOUT,
        max_queued: int = MAX_QUEUED,
        cookie_prefixes: tuple[bytes, ...] = (),
        breaker_threshold: int = THRESHOLD,
        breaker_delay: float = FIRST_DELAY,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        endpoint: ClientEndpoint
        if not isinstance(host, str):
            endpoint = host  # parsed already (a users map's line, with its pin)
        elif port is None:
            endpoint = parse_client_endpoint(host)  # EndpointError, a ValueError, if malformed
        elif host == "unix":
            endpoint = UNIXClientEndpoint(str(port))
        else:
            endpoint = TCPClientEndpoint(host, int(port))
        self.backend = Backend(endpoint, before_connect=before_connect, check_peer=check_peer, limits=limits,
                               connect_timeout=connect_timeout, tls=tls, head_timeout=backend_timeout)
        self.backend_timeout = backend_timeout
        self.admission = Admission(max_in_flight, queue_timeout, max_queued)  # see _admission
        self.backend.status.count_in_flight(lambda: self.admission.in_flight)
        self.breaker = CircuitBreaker(self.backend.status, threshold=breaker_threshold, first_delay=breaker_delay)
        # Public prefixes that all reach this backend (b"/~alice/", b"/users/alice/"): a
        # cookie set through one of them is also set for the others.
        self.cookie_prefixes = cookie_prefixes
        self._last_prepath: list[bytes] = []
        self._last_cookie_path = b"/"  # the cookie path of _last_prepath (see _cookie_path)

    @property
    def status(self) -> BackendStatus:
        """The front's view of this backend (see ``_backend.BackendStatus``)."""
        return self.backend.status

    def render(self, request: Request) -> Any:
        request.log_fields = {**(request.log_fields or {}), "backend": self.backend.describe()}  # the JSON log's
        # The call goes out before render returns (up to the wait for its
        # answer); the rest runs without a cancel scope of its own. Forwarding
        # never uses start_soon (the body pump has its own nursery).
        return request.run_until_it_waits(self._forward(request))

    def _error(self, request: Request, code: int, brief: str,
               detail: str = "The personal server behind this address is not answering properly.",
               *, backend_fault: bool = True) -> bytes:
        """An error page for ``request``, counted; a 500, 502 or 504 that is
        the backend's fault counts as a failure for its circuit breaker."""
        self.backend.status.answered(code)
        if backend_fault and code in (500, 502, 504):
            self.breaker.failed(request)
        return render_error(request, code, brief, detail)

    def _log(self, message: str, *args: object) -> None:
        """A warning the backend caused, rate-limited per backend."""
        remote_log.warning(self.backend.describe(), message, *args)

    async def _forward(self, request: Request) -> bytes | None:
        # One coroutine for the breaker, the admission and the connection (a
        # frame less for every resumption of a request's task); a request
        # with a body goes on in _forward_with_body.
        self.backend.status.requests += 1
        wait = self.breaker.admit(request)
        if wait is not None:
            self._log("502 for %s: %s failed repeatedly; circuit open", request.uri.decode("latin-1"),
                      self.backend.describe())
            request.setHeader(b"retry-after", b"%d" % max(1, math.ceil(wait)))
            return self._error(request, 502, "Bad Gateway", backend_fault=False)
        try:
            slot = self.admission.try_enter()
            if slot is None:
                try:
                    slot = await self.admission.enter()
                except Overloaded as exc:
                    self._log("503 for %s: %s: %s", request.uri.decode("latin-1"), self.backend.describe(), exc)
                    request.setHeader(b"retry-after", RETRY_AFTER)
                    return self._error(request, 503, "Service Unavailable",
                                       "The personal server behind this address is busy. Try again in a moment.")
            try:
                connected = self.backend.connected()  # the usual case: open already, nothing to await
                if connected is None:
                    try:
                        connected = await self.backend.connection()
                    except BackendUnavailable as exc:
                        code, brief = (504, "Gateway Timeout") if exc.timed_out else (502, "Bad Gateway")
                        self._log("%d for %s: %s", code, request.uri.decode("latin-1"), exc)
                        return self._error(request, code, brief, backend_fault=False)  # the Backend's delay applies
                root, responses = connected
                if not request.has_body:
                    return await self._exchange(request, root, responses, None, None, slot)
                return await self._forward_with_body(request, root, responses, slot)
            finally:
                slot.release()  # unless the head came: a failure, or the client left
        finally:
            self.breaker.ended(request)

    async def _forward_with_body(self, request: Request, root: rpc.RemoteReference, responses: Responses,
                                 slot: Slot) -> bytes | None:
        # The body is pumped from this request's own nursery (not by the rpc
        # connection), so that no read of the client's socket outlives the
        # call: the connection reads what is left after us.
        body = rpc.StreamSender()
        pump_scope = trio.CancelScope()
        exchange_scope = trio.CancelScope()  # cancelled if the client's body fails
        client_failure: list[Exception] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump_body, request, body, pump_scope, exchange_scope, client_failure)
            with exchange_scope:
                # Captured, so that it leaves the nursery as it is, not in an exception group.
                relayed = await outcome.acapture(self._exchange, request, root, responses, body, pump_scope, slot)
        if client_failure:
            return self._client_failed(request, client_failure[0])
        return relayed.unwrap()

    async def _exchange(self, request: Request, root: rpc.RemoteReference, responses: Responses,
                        body: rpc.StreamSender | None, pump_scope: trio.CancelScope | None,
                        slot: Slot) -> bytes | None:
        """Call the backend and relay its response: from the call's answer (the
        body in it, or on a stream it carries), or streamed (the head comes to
        ``responses`` first, under this request's token, the answer after the
        body). The token is forgotten however the request ends."""
        length = request.declared_body_size if body is not None else 0
        token = responses.new_token()
        started = trio.current_time()
        try:
            call = await root.start_call("request", ForwardedRequest.wire_of(request, length, token), body)
        except Exception as exc:
            if pump_scope is not None:
                pump_scope.cancel()
            return await self._relay_answer(request, exc)
        # The head is awaited for at most backend_timeout: the connection's timer
        # (Responses.expire_overdue) wakes the request if it is overdue.
        sink = responses.expect(token)

        def answered() -> None:
            if pump_scope is not None:
                pump_scope.cancel()  # the backend has answered: it wants no more body
            sink.arrived.set()

        call.add_done_callback(answered)
        try:
            relayed = False
            try:
                await sink.arrived.wait()
                slot.release()  # the head, the answer or the timeout came: no longer in flight
                if not sink.overdue:
                    self.backend.status.observe(trio.current_time() - started)
                else:
                    self._log("504 for %s: %s sent no response within %g s", request.uri.decode("latin-1"),
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
    async def _pump_body(request: Request, body: rpc.StreamSender, scope: trio.CancelScope,
                         exchange_scope: trio.CancelScope, client_failure: list[Exception]) -> None:
        with scope:
            try:
                async for piece in request.body_stream():
                    await body.send_all(piece)
                await body.aclose()
            except rpc.StreamError:
                pass  # the backend stopped reading: it has what it wants
            except (ParseError, BodyTooLarge, BodyTimeout, ConnectionLost) as exc:
                # The client's fault, not the backend's: the call is cancelled
                # (its work stops) and the client gets its own error.
                body.abort(f"{type(exc).__name__}")
                client_failure.append(exc)
                exchange_scope.cancel()

    def _client_failed(self, request: Request, exc: Exception) -> bytes:
        """The answer when the client's body failed (see ``_pump_body``)."""
        if request.startedWriting:  # the backend's answer was already going out
            raise ConnectionError(f"the client's request body failed: {exc}") from exc
        _clear_response(request)
        if isinstance(exc, ConnectionLost):
            return render_error(request, 400, "Bad Request", "The request body did not arrive.")  # no one reads it
        if isinstance(exc, BodyTooLarge):
            code, brief, detail = 413, "Request Entity Too Large", "The request body is too large."
        elif isinstance(exc, BodyTimeout):
            code, brief, detail = 408, "Request Timeout", "The request body did not arrive in time."
        else:
            code = exc.status if isinstance(exc, ParseError) else 400
            brief, detail = "Bad Request", "The request body is malformed."
        address = request.getClientAddress()
        client = getattr(address, "host", None) or str(address)  # rate-limited per client address
        remote_log.info(("client", client), "%d for %s from client %s: %s", code, request.uri.decode("latin-1"),
                        client, exc)
        return render_error(request, code, brief, detail)

    def _apply_head(self, request: Request, message: Any) -> ForwardedResponse:
        response = ForwardedResponse.from_wire(message)
        code, reason = check_status(response.status, response.reason)
        cookie_path = self._cookie_path(request.prepath)
        # At the root of a host (a user's own host name), the backend is the whole
        # origin: the front sets no cookie there, so none of its names is reserved.
        headers = check_headers(response.headers, cookie_path, FRONT_COOKIES if request.prepath else frozenset())
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
        if response.length is not None:
            request.setHeader(b"content-length", b"%d" % response.length)
        self.breaker.succeeded(request)
        return response

    def _cookie_path(self, prepath: list[bytes]) -> bytes:
        """The public prefix where this backend is mounted, as a cookie path;
        the last one is kept (it is nearly always the same)."""
        if prepath != self._last_prepath:
            self._last_cookie_path = b"/" + b"".join(quote(seg, safe="").encode("ascii") + b"/" for seg in prepath)
            self._last_prepath = list(prepath)
        return self._last_cookie_path

    async def _relay_answer(self, request: Request, answer: Any) -> bytes | None:
        """Relay the call's answer (or its failure, as an exception)."""
        if isinstance(answer, rpc.RemoteError):
            remote_log.log(self.backend.describe(), logging.ERROR, "the personal server at %s raised %s",
                           self.backend.describe(), answer)
            return self._error(request, 500, "Internal Server Error")
        if isinstance(answer, BaseException):
            if not isinstance(answer, rpc.ConnectionLost):  # else the connection's end says why
                self.backend.status.error(str(answer))
            self._log("502 for %s: %s", request.uri.decode("latin-1"), answer)
            return self._error(request, 502, "Bad Gateway")
        try:
            response = self._apply_head(request, answer)
            body, stream, file = response.body, response.stream, response.file
            if body is None and stream is None and file is None:
                raise MessageError("a complete response without a body")
            length = response.length
            if body is not None and length is not None and request.method != b"HEAD" and len(body) != length:
                raise MessageError(f"a body of {len(body)} bytes announced as {length}")
            if file is not None:
                _check_passed_file(file, length)
        except (MessageError, BadBackendResponse) as exc:
            if isinstance(answer, dict):
                _close_passed_file(answer)
            return await self._refuse(request, exc)
        if stream is not None:
            return await self._relay_body(request, stream)
        if file is not None:
            await self._relay_file(request, *file)
            return None
        return body

    async def _relay_file(self, request: Request, file: rpc.FileDescriptor, offset: int, count: int) -> None:
        """Send the body from the file the personal server passed (checked already)."""
        with file:
            if request.method != b"HEAD":
                try:
                    await request.sendfile(file.fileno(), offset, count)
                except ValueError as exc:  # the file shrank meanwhile: too late for a status
                    self._log("%s: the file passed for %s shrank: %s", self.backend.describe(),
                              request.uri.decode("latin-1"), exc)
                    raise ConnectionError(f"{self.backend.describe()} passed a file that shrank") from exc
        request.finish()

    async def _refuse(self, request: Request, exc: Exception) -> bytes:
        self.backend.status.error(f"bad response: {exc}", down=True)
        self._log("502 for %s: bad response from %s: %s", request.uri.decode("latin-1"),
                  self.backend.describe(), exc)
        await self.backend.drop()
        return self._bad_gateway(request)

    def _bad_gateway(self, request: Request, code: int = 502, brief: str = "Bad Gateway") -> bytes:
        """A clean 502 (or other error), whatever part of the backend's head was
        already applied: none of the response's headers stay (a backend's
        Content-Encoding or Content-Length would garble our page)."""
        _clear_response(request)
        return self._error(request, code, brief)

    async def _relay_stream(self, request: Request, sink: ResponseSink) -> bytes | None:
        try:
            self._apply_head(request, sink.head)
        except (MessageError, BadBackendResponse) as exc:
            return await self._refuse(request, exc)
        assert sink.body is not None
        return await self._relay_body(request, sink.body)

    async def _relay_body(self, request: Request, body: rpc.StreamReceiver) -> bytes | None:
        try:
            while True:
                # Each wait for a piece is bounded: a backend that stalls must not hold the client.
                try:
                    piece = await body.receive_piece(timeout=self.backend_timeout)
                except trio.TooSlowError:
                    raise BodyStalled(f"no piece of the body within {self.backend_timeout:g} s") from None
                if not piece:
                    break
                if isinstance(piece, bytes):
                    request.write(piece)
                    await request.drain()
                else:
                    await request.sendpipe(piece.fd, piece.size, piece.consumed)
        except (rpc.StreamError, rpc.ConnectionLost, BodyStalled) as exc:
            self.backend.status.error(f"failed mid-response: {exc}")
            self._log("%s failed mid-response for %s: %s", self.backend.describe(),
                      request.uri.decode("latin-1"), exc)
            stalled = isinstance(exc, BodyStalled)
            if stalled:
                await body.aclose()  # its producer stops (the call, if still open, is cancelled too)
            if not request.startedWriting:  # nothing was written yet (_error counts the failure)
                if stalled:
                    return self._bad_gateway(request, 504, "Gateway Timeout")
                return self._bad_gateway(request)
            # Too late for a status: the Site aborts the client connection.
            self.breaker.failed(request)
            raise ConnectionError(f"{self.backend.describe()} failed mid-response") from exc
        request.finish()
        return None


def _check_passed_file(file: tuple[rpc.FileDescriptor, int, int], length: int | None) -> None:
    """``MessageError`` unless the front may send this file range as the body (see ``_passed_file``)."""
    descriptor, offset, count = file
    if length != count:
        raise MessageError(f"a passed file of {count} bytes announced as {length}")
    reason = unsendable(descriptor.fileno(), offset, count)
    if reason is not None:
        raise MessageError(f"a passed file refused: {reason}")


def _close_passed_file(answer: dict[Any, Any]) -> None:
    """Close a file a refused answer passed now, not when the answer is collected."""
    file = answer.get("file")
    parts = file.values() if isinstance(file, dict) else file if isinstance(file, list) else [file]
    for part in parts:
        if type(part) is rpc.FileDescriptor:
            part.close()


def _clear_response(request: Request) -> None:
    """Forget whatever part of the backend's head was applied: our page replaces it."""
    headers = request.responseHeaders
    for name in list(headers):
        headers.removeHeader(name)
    request.cookies.clear()
