"""``ASGIResource``: an ASGI 3.0 application as a leaf of the resource tree.

Theory of operation
-------------------
The application runs on the server's own trio loop, in the request's task:
no thread, no second event loop (Starlette and FastAPI run on trio through
anyio). Each request is one call ``app(scope, receive, send)`` with an
``http`` scope:

- ``receive()`` gives the request body as it arrives, one
  ``http.request`` message per piece (``more_body`` until the last); the body
  is bounded like any other (``max_request_body``, or the Site's limit): past
  it, or when the client stalls or sends a malformed body, the request is
  answered 413, 408 or 400 at once and the application receives
  ``http.disconnect``. Once the body is in, ``receive()`` waits until the
  response is complete or the client goes away, then gives
  ``http.disconnect``;
- ``send()`` takes ``http.response.start`` (kept until the first body, so a
  one-message body gets a Content-Length), ``http.response.body`` (each
  piece with ``more_body`` is sent before ``send`` returns: a slow client
  slows the application, memory stays bounded) and the
  ``http.response.pathsend`` extension (a file sent with ``os.sendfile``).
  Once the client is gone, ``send`` raises ``ClientDisconnected`` (an
  ``OSError``), and a client that goes away while the application waits
  cancels it.

``root_path`` is the path the resource is reached at (``/~alice/app``
behind the front of a community host) and ``path`` the whole path, as the
ASGI spec asks. ``scope["state"]`` is a shallow copy of what the lifespan
startup put in its state.

The application is called inside ``render`` and runs there up to its first
wait (``Request.run_until_it_waits``): one that answers without waiting (a
quick endpoint) is answered as a synchronous render, with no cancel scope,
task or timer; one that waits goes on as a deferred response.

Errors: an exception before anything was sent gives the Site's 500 page;
after that (or an application that returns before its response is complete)
the error is logged and the connection aborted, never passed off as a
complete response.

Lifespan: ``run_with_lifespan(serve)`` sends ``lifespan.startup``, awaits
``serve()`` and sends ``lifespan.shutdown``; a failed startup raises
``LifespanError``, and an application that rejects the lifespan scope
(raises at once) is served without one, as the spec allows.

WebSocket is not served (yet): a request asking to upgrade to it gets a 404
without reaching the application.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import trio

from trioweb.address import UNIXAddress
from trioweb.http import BodyTimeout, BodyTooLarge, ConnectionLost, ParseError
from trioweb.resource import Resource, render_error

if TYPE_CHECKING:
    from trioweb.server import Request

__all__ = ["ASGIResource", "ClientDisconnected", "LifespanError"]

log = logging.getLogger("trioweb.asgi")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Application = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.4"}
# How long the application's shutdown may take before it is cancelled.
SHUTDOWN_TIMEOUT = 30.0


class ClientDisconnected(OSError):
    """Raised by ``send`` once the client is gone (or the request was already answered)."""


class LifespanError(Exception):
    """The application's lifespan startup failed (its message is the application's)."""


class ASGIResource(Resource):
    """Serves an ASGI 3.0 application at this point of the tree (a leaf).

    ``ASGIResource(app)``; ``state`` is the lifespan state each request's
    scope gets a copy of.
    """

    isLeaf = True
    stream_request_body = True  # receive() gives the body as it arrives

    def __init__(self, app: Application) -> None:
        super().__init__()
        self.app = app
        self.state: dict[str, Any] = {}

    def putChild(self, path: bytes, child: Resource) -> None:
        raise RuntimeError("an ASGIResource is a leaf: it cannot have children")

    def render(self, request: Request) -> Any:
        upgrade = request.requestHeaders.last_value(b"upgrade")
        if upgrade is not None and upgrade.lower() == b"websocket":
            return render_error(request, 404, "No Such Resource", "WebSocket is not served here.")
        request.defaultContentType = None
        # A quick application is answered before render returns, as a
        # synchronous render is, without the scope and watcher of a deferred one.
        return request.run_until_it_waits(_Exchange(self, request).serve())

    async def run_with_lifespan(self, serve: Callable[[], Awaitable[None]]) -> None:
        """Start the application (``lifespan.startup``), ``await serve()``, and
        stop it (``lifespan.shutdown``, at most ``SHUTDOWN_TIMEOUT`` seconds).

        Raises ``LifespanError`` if the startup fails (``serve`` is not
        called); exceptions of ``serve`` propagate as they are.
        """
        lifespan = _Lifespan(self)
        outcome: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lifespan.run)
            await lifespan.started.wait()
            if lifespan.failure is None:
                try:
                    await serve()
                except BaseException as exc:  # kept out of the nursery's exception group
                    outcome = exc
                await lifespan.shut_down()
            nursery.cancel_scope.cancel()
        if lifespan.failure is not None:
            raise LifespanError(lifespan.failure)
        if outcome is not None:
            raise outcome


class _Lifespan:
    """The application's one ``lifespan`` call, from startup to shutdown."""

    def __init__(self, resource: ASGIResource) -> None:
        self.resource = resource
        self.started = trio.Event()  # startup answered, failed, or not supported
        self.stopped = trio.Event()
        self.shutdown_asked = trio.Event()
        self.failure: str | None = None
        self.supported = True
        self._startup_sent = False

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.resource.state}
        try:
            await self.resource.app(scope, self.receive, self.send)
        except Exception as exc:
            if self.started.is_set():
                if self.failure is None:
                    log.error("the ASGI application's lifespan failed", exc_info=exc)
            else:
                # Raising at once is how an application says it has no lifespan.
                log.info("the ASGI application does not support lifespan (%r): serving without it", exc)
                self.supported = False
        finally:
            self.started.set()
            self.stopped.set()

    async def receive(self) -> Message:
        if not self._startup_sent:
            self._startup_sent = True
            return {"type": "lifespan.startup"}
        await self.shutdown_asked.wait()
        return {"type": "lifespan.shutdown"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failure = message.get("message") or "lifespan startup failed"
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            log.error("the ASGI application's shutdown failed: %s", message.get("message", ""))
            self.stopped.set()
        else:
            raise ValueError(f"unknown lifespan message type {kind!r}")

    async def shut_down(self) -> None:
        if not self.supported:
            return
        self.shutdown_asked.set()
        with trio.move_on_after(SHUTDOWN_TIMEOUT) as waited:
            await self.stopped.wait()
        if waited.cancelled_caught:
            log.error("the ASGI application did not shut down within %s s", SHUTDOWN_TIMEOUT)


class _Exchange:
    """One request's call of the application: its ``receive`` and ``send``."""

    # Where every exchange starts, kept on the class (an instance stores what changes).
    pieces: AsyncIterator[bytes] | None = None
    body_done = False  # the last http.request message was given
    response_started = False  # http.response.start received
    answered = False  # the request was answered without the application (a bad body)

    def __init__(self, resource: ASGIResource, request: Request) -> None:
        self.request = request
        self.app = resource.app
        self.scope = _scope(request, resource.state)

    async def serve(self) -> bytes:
        """Call the application; b"" once the request is answered (or its connection aborted)."""
        request = self.request
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if request.finished or self.answered or _client_gone(exc):
                return b""
            if request.startedWriting:
                log.error("ASGI application %r failed after its response started; connection aborted",
                          self.app, exc_info=exc)
                request.loseConnection()
                return b""
            raise  # the Site's 500 page
        if request.finished or self.answered:
            return b""
        if request.startedWriting:
            log.error("ASGI application %r returned before its response was complete; connection aborted",
                      self.app)
            request.loseConnection()
            return b""
        raise RuntimeError("the ASGI application returned without sending a complete response")

    async def receive(self) -> Message:
        if not self.body_done:
            return await self._next_body_message()
        try:
            await self.request.notifyFinish()
        except ConnectionLost:
            pass
        return {"type": "http.disconnect"}

    async def _next_body_message(self) -> Message:
        if not self.request.has_body:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if self.pieces is None:
            self.pieces = self.request.body_stream()
        try:
            piece = await anext(self.pieces)
        except StopAsyncIteration:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except (BodyTooLarge, BodyTimeout, ParseError, ConnectionLost) as exc:
            self.body_done = True
            self._answer_body_error(exc)
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": piece, "more_body": True}

    def _answer_body_error(self, exc: Exception) -> None:
        request = self.request
        self.answered = True
        if isinstance(exc, ConnectionLost) or request.startedWriting:
            request.loseConnection()
            return
        if isinstance(exc, BodyTooLarge):
            page = render_error(request, 413, "Request Entity Too Large", "The request body is larger than allowed.")
        elif isinstance(exc, BodyTimeout):
            page = render_error(request, 408, "Request Timeout", "The request body did not arrive in time.")
        else:
            page = render_error(request, 400, "Bad Request", "The request body is malformed.")
        request.write(page)
        request.finish()

    async def send(self, message: Message) -> None:
        request = self.request
        if self.answered or request.finished:
            raise ClientDisconnected("the response is already complete")
        kind = message["type"]
        if kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("http.response.body sent before http.response.start")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, bytearray | memoryview):
                    raise TypeError(f"an ASGI body must be bytes, not {type(body).__name__}")
                body = bytes(body)
            if body:
                request.write(body)
            if not message.get("more_body", False):
                request.finish()
            elif body:
                try:
                    await request.drain()
                except (ConnectionLost, trio.BrokenResourceError):
                    raise ClientDisconnected("the client went away") from None
        elif kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("http.response.start sent twice")
            self.response_started = True
            request.setResponseCode(int(message["status"]))
            headers = request.responseHeaders
            for name, value in message.get("headers", ()):
                headers.addRawHeader(bytes(name), bytes(value))
        elif kind == "http.response.pathsend":
            if not self.response_started:
                raise RuntimeError("http.response.pathsend sent before http.response.start")
            await self._send_path(message["path"])
        else:
            raise ValueError(f"unknown ASGI message type {kind!r} for an http scope")

    async def _send_path(self, path: str) -> None:
        request = self.request
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if not request.responseHeaders.hasHeader(b"content-length"):
                request.responseHeaders.set_checked(b"content-length", b"%d" % size)
            try:
                await request.sendfile(fd, 0, size)
            except (ConnectionLost, trio.BrokenResourceError):
                raise ClientDisconnected("the client went away") from None
        finally:
            os.close(fd)
        request.finish()


def _client_gone(exc: BaseException) -> bool:
    return isinstance(exc, ClientDisconnected | ConnectionLost)


_HTTP_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}


def _scope(request: Request, state: dict[str, Any]) -> dict[str, Any]:
    """The ``http`` scope of ``request`` (ASGI 3.0, HTTP spec 2.4)."""
    raw_path = request.path
    client = request.getClientAddress()
    host = request.getHost()
    protocol = request.clientproto
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": _HTTP_VERSIONS.get(protocol) or protocol[5:].decode("ascii"),
        "method": request.method.decode("ascii"),
        "scheme": "https" if request.isSecure() else "http",
        "path": unquote_to_bytes(raw_path).decode("utf-8", "replace") if b"%" in raw_path else raw_path.decode(
            "utf-8", "replace"),
        "raw_path": raw_path,
        "query_string": request.uri.partition(b"?")[2],
        "root_path": ("/" + b"/".join(request.prepath).decode("utf-8", "replace")) if request.prepath else "",
        "headers": request.requestHeaders.pair_list(),
        "client": None if isinstance(client, UNIXAddress) else (client.host, client.port),
        "server": (host.name, None) if isinstance(host, UNIXAddress) else (host.host, host.port),
        "state": dict(state),
        "extensions": {"http.response.pathsend": {}},
    }
