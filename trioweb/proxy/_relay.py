"""One request relayed to an upstream, and its response back: what both proxies share.

``relay(request, upstream, target, fields, timeouts)`` is the whole
exchange; it returns what an ``async def`` render returns (an error page as
bytes, or None once it has finished the request itself). What the client
sees:

- no connection (refused, no such host or socket): 502 at once; no
  connection within the connect timeout: 504;
- a reused connection the upstream had closed: the request is sent again
  on a new one, once, if it is idempotent and has no body (a body is
  streamed, so it cannot be sent twice); otherwise 502;
- no response head within ``read_timeout`` (or the upstream not taking the
  request within it): 504;
- a malformed head (status, fields, framing): 502, and the connection is
  closed;
- the upstream fails or stalls (``read_timeout`` between pieces) after the
  head was relayed: the client connection is aborted, never passed off as a
  complete response; before any byte of it was sent: a clean 502 (504 for a
  stall) instead.

Both bodies stream with backpressure: the request body is sent as the
client sends it (with its Content-Length, or chunked when it has none), and
each piece of the response is sent to the client before the next is read
from the upstream. Memory stays bounded whatever the sizes. Redirects are
passed to the client, never followed.

A client body that fails (too large, too slow, malformed) answers 413, 408
or 400 as a buffered body would, and the upstream connection is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import outcome
import trio

from trioweb._request import Request
from trioweb.http import BadUpstreamResponse, BodyTimeout, BodyTooLarge, ParseError
from trioweb.proxy._client import ResponseHead, UpstreamClosed, UpstreamConnection
from trioweb.proxy._headers import relayed_response_headers, response_via
from trioweb.proxy._pool import Upstream, UpstreamUnavailable
from trioweb.resource import render_error

log = logging.getLogger("trioweb.proxy")

# Requests that may be sent twice (RFC 9110 §9.2.2), when they carry no body.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@dataclass(frozen=True)
class Timeouts:
    """``read``: the longest wait for the upstream to take the request, to send
    its response head, and between two pieces of its body (the connect
    timeout is the ``Upstream``'s)."""

    read: float = 60.0


class _Failed(Exception):
    """The exchange failed before a response: answer with this status."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


_BRIEFS = {400: "Bad Request", 408: "Request Timeout", 413: "Request Entity Too Large", 502: "Bad Gateway",
           504: "Gateway Timeout"}
_DETAILS = {400: "The request body is malformed.", 408: "The request body did not arrive in time.",
            413: "The request body is larger than allowed here.",
            502: "The server behind this address is not answering properly.",
            504: "The server behind this address did not answer in time."}


def error_page(request: Request, code: int) -> bytes:
    """A generic error page: no detail of the upstream's failure reaches the client."""
    headers = request.responseHeaders
    for name in list(headers):
        headers.removeHeader(name)
    request.cookies.clear()
    request.defaultContentType = b"text/html"
    return render_error(request, code, _BRIEFS[code], _DETAILS[code])


def request_head(request: Request, target: bytes, fields: list[tuple[bytes, bytes]]) -> tuple[bytes, bool]:
    """The request head for the upstream, and whether its body goes chunked."""
    chunked = False
    if request.has_body:
        size = request.declared_body_size
        if size is None:
            fields.append((b"Transfer-Encoding", b"chunked"))
            chunked = True
        else:
            fields.append((b"Content-Length", b"%d" % size))
    elif request.method in (b"POST", b"PUT", b"PATCH"):
        fields.append((b"Content-Length", b"0"))
    lines = [name + b": " + value for name, value in fields]
    return b"%s %s HTTP/1.1\r\n%s\r\n\r\n" % (request.method, target, b"\r\n".join(lines)), chunked


async def relay(request: Request, upstream: Upstream, target: bytes, fields: list[tuple[bytes, bytes]],
                timeouts: Timeouts, via: bytes | None = None) -> bytes | None:
    head, chunked = request_head(request, target, fields)
    may_retry = request.method in IDEMPOTENT and not request.has_body
    connection: UpstreamConnection | None = None
    try:
        for attempt in (1, 2):
            connection = upstream.take_idle() if attempt == 1 else None
            if connection is None:
                try:
                    connection = await upstream.connect()
                except UpstreamUnavailable as exc:
                    log.warning("%s for %s: %s", 504 if exc.timed_out else 502, _uri(request), exc)
                    return error_page(request, 504 if exc.timed_out else 502)
            try:
                response = await _exchange(request, connection, head, chunked, timeouts)
                break
            except UpstreamClosed as exc:
                connection.close()
                if attempt == 1 and connection.reused and exc.nothing_received and may_retry:
                    continue  # a kept-alive connection the upstream had closed: once more, afresh
                raise _Failed(502, str(exc)) from None
        assert connection is not None
        return await _relay_response(request, connection, response, timeouts, via, upstream)
    except _Failed as exc:
        log.warning("%d for %s from %s: %s", exc.code, _uri(request), upstream.describe(), exc)
        return error_page(request, exc.code)
    finally:
        if connection is not None:
            upstream.put_back(connection)  # closes it unless the exchange left it reusable


async def _exchange(request: Request, connection: UpstreamConnection, head: bytes, chunked: bool,
                    timeouts: Timeouts) -> ResponseHead:
    """Send the request (streaming its body beside) and receive the response head."""
    read = timeouts.read
    if not request.has_body:
        try:
            await connection.send(head, read)
        except trio.TooSlowError:
            raise _Failed(504, f"the upstream did not take the request within {read:g} s") from None
        return await _receive_head(request, connection, read)
    body_failure: list[BaseException] = []
    body_sent = False

    async def send_body(receiving: trio.CancelScope) -> None:
        nonlocal body_sent
        try:
            await connection.send(head, read)
            async for piece in request.body_stream():
                await connection.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece, read)
            if chunked:
                await connection.send(b"0\r\n\r\n", read)
            body_sent = True
        except trio.TooSlowError:
            body_failure.append(_Failed(504, "the upstream stopped taking the request body"))
            receiving.cancel()
        except UpstreamClosed:
            pass  # the upstream stopped reading: its response (maybe an early 413) says why
        except (BodyTooLarge, BodyTimeout, ParseError) as exc:
            body_failure.append(exc)
            receiving.cancel()

    async with trio.open_nursery() as nursery:
        receiving = trio.CancelScope()
        nursery.start_soon(send_body, receiving)
        with receiving:
            # Captured, so that a failure leaves the nursery as it is, not in an exception group.
            received = await outcome.acapture(_receive_head, request, connection, read)
        if not body_sent:
            nursery.cancel_scope.cancel()  # an early answer: the rest of the body is not wanted
    if body_failure:
        failure = body_failure[0]
        if isinstance(failure, _Failed):
            raise failure
        code = 413 if isinstance(failure, BodyTooLarge) else 408 if isinstance(failure, BodyTimeout) else 400
        raise _Failed(code, f"the client's body failed: {type(failure).__name__}")
    response = received.unwrap()
    if not body_sent:
        connection.spoil()  # the upstream answered before the whole body came
    return response


async def _receive_head(request: Request, connection: UpstreamConnection, timeout: float) -> ResponseHead:
    try:
        return await connection.receive_head(request.method, timeout)
    except BadUpstreamResponse as exc:
        raise _Failed(502, f"bad response: {exc}") from None
    except trio.TooSlowError:
        raise _Failed(504, f"no response within {timeout:g} s") from None


async def _relay_response(request: Request, connection: UpstreamConnection, response: ResponseHead,
                          timeouts: Timeouts, via: bytes | None, upstream: Upstream) -> bytes | None:
    request.setResponseCode(response.status, response.reason)
    headers = request.responseHeaders
    cookies = request.cookies
    for name, value in relayed_response_headers(response.headers):
        if name == b"set-cookie":
            cookies.append(value)
        elif name != b"via" or via is None:
            headers.add_checked(name, value)  # (checked by the client: check_fields)
    if via is not None:
        headers.add_checked(b"via", response_via(response.headers, via))
    request.defaultContentType = None  # the upstream's headers are the whole story
    if response.content_length is not None:
        headers.set_checked(b"content-length", b"%d" % response.content_length)
    try:
        whole = connection.body_if_received()
        if whole is not None:
            request.write(whole)
            request.finish()
            return None
        while True:
            try:
                piece = await connection.receive_body(timeouts.read)
            except trio.TooSlowError:
                raise _Failed(504, f"no piece of the body within {timeouts.read:g} s") from None
            if connection.body_complete:
                request.write(piece)  # all of it came: finish() frames it with its length
                break
            request.write(piece)
            await request.drain()
    except (_Failed, UpstreamClosed, BadUpstreamResponse) as exc:
        connection.close()
        if not request.startedWriting:
            code = exc.code if isinstance(exc, _Failed) else 502
            log.warning("%d for %s from %s: %s", code, _uri(request), upstream.describe(), exc)
            return error_page(request, code)
        # Too late for a status: the Site aborts the client connection.
        raise ConnectionError(f"{upstream.describe()} failed mid-response: {exc}") from None
    request.finish()
    return None


def _uri(request: Request) -> str:
    return request.uri.decode("latin-1")
