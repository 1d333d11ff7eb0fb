"""``Site`` (a resource tree served over HTTP) and ``Server`` (its listeners).

``Site.handle`` is what the HTTP engine calls for each request head: it
makes a ``Request`` (``requestFactory``) and lets it run its course (see
``trioweb._request``): the Site finds the resource (``getResourceFor``),
adds its headers to every response, and gives the pages of requests whose
resource fails (``unsupported_method_page``, ``failure_page``) and the
access log.

``Server`` serves a Site on listeners (``trioweb.http.Server`` does the
accepting, the connection cap and the graceful stop).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from html import escape
from typing import Any

import trio

from trioweb._accesslog import AccessLog
from trioweb._encoding import GzipEncoderFactory
from trioweb._forms import FileUpload, FormError
from trioweb._forwarded import TrustedProxies
from trioweb._request import CACHED, DeferredIdiomError, Request
from trioweb._session import Session, SiteSessions
from trioweb._version import __version__
from trioweb.http import ConnectionLost, Handler, HTTPConnection, Limits, RequestHead
from trioweb.http import Server as HTTPServer
from trioweb.resource import (
    KNOWN_METHODS,
    NOT_DONE_YET,
    Resource,
    UnsupportedMethod,
    getChildForRequest,
    render_error,
    traceback_page,
)

__all__ = [
    "CACHED",
    "NOT_DONE_YET",
    "ConnectionLost",
    "DeferredIdiomError",
    "FileUpload",
    "GzipEncoderFactory",
    "Request",
    "Server",
    "Session",
    "Site",
    "TrustedProxies",
    "serve",
    "version",
]

log = logging.getLogger("trioweb.server")

version = b"trioweb/" + __version__.encode("ascii")


class Site(SiteSessions):
    """A resource tree and the policy it is served with.

    ``Site(resource, limits=Limits(...), logPath=None, displayTracebacks=False)``.
    ``logPath`` is a file for the access log (``"-"`` for stdout, None for
    no access log), in ``logFormat`` (``combined``, ``common``, ``twisted``,
    ``json``; see ``trioweb._accesslog``). ``headers`` are added to every response,
    errors included; a ``Server`` or ``Date`` among them replaces the
    server's own rather than doubling it. ``server_header`` is the ``Server``
    token (empty: no ``Server`` field). With ``proxies`` (a ``TrustedProxies``), the
    ``Forwarded``/``X-Forwarded-*`` headers of those peers set the client,
    scheme and host each request sees. The error pages a request gets when its resource fails
    are the Site's too (``unsupported_method_page``, ``failure_page``).
    Its sessions (``sessions``, ``makeSession``, ``getSession``,
    ``sessionFactory``, ``max_sessions``) are described in ``trioweb._session``.
    """

    requestFactory = Request
    displayTracebacks = False

    def __init__(
        self,
        resource: Resource,
        *,
        limits: Limits | None = None,
        logPath: str | None = None,
        logFormat: str = "combined",
        displayTracebacks: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
        server_header: bytes = version,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.resource = resource
        self.limits = limits or Limits()
        self.displayTracebacks = displayTracebacks
        # An added Server field replaces the server's token (errors found by
        # the HTTP engine carry it too); any other is added to every response.
        self.extra_headers = [(name, value) for name, value in headers or [] if name.lower() != b"server"]
        self.server_header = next((value for name, value in reversed(headers or []) if name.lower() == b"server"),
                                  server_header)
        self.proxies = proxies
        self.access_log = AccessLog.open(logPath, logFormat) if logPath else None

    def getResourceFor(self, request: Request) -> Resource:
        """The resource ``request`` is for: ``OPTIONS *`` asks the server itself,
        any other request traverses the tree from its ``postpath``."""
        request.site = self
        request.sitepath = request.prepath[:]
        if request.uri == b"*":
            return _WHOLE_SERVER
        return getChildForRequest(self.resource, request)

    def handle(self, channel: HTTPConnection, head: RequestHead) -> Coroutine[Any, Any, None] | None:
        """Answer one request head arriving on ``channel`` (the HTTP engine's
        handler): None when the response is complete, else a coroutine to
        await for the rest (no coroutine at all for a synchronous render)."""
        return self.start_processing(self.requestFactory(self, channel, head))

    async def process(self, request: Request) -> None:
        """Traverse, read the body, render and answer ``request`` (see ``Request.process``).

        ``request.prepath``/``postpath`` say where traversal starts: a request
        forwarded from another server arrives with the prefix it was
        published under already in ``prepath``.
        """
        rest = self.start_processing(request)
        if rest is not None:
            await rest

    def start_processing(self, request: Request) -> Coroutine[Any, Any, None] | None:
        """`process` up to its first wait: None if the response is complete, else
        a coroutine to await for the rest."""
        if self.proxies is not None:
            self.proxies.apply(request)
        for name, value in self.extra_headers:
            request.responseHeaders.addRawHeader(name, value)
        return request.process()

    def unsupported_method_page(self, request: Request, exc: UnsupportedMethod) -> bytes:
        """The page for a method ``resource.render`` found no ``render_<METHOD>`` for:
        405 with ``Allow`` for a method HTTP defines, 501 for any other."""
        method = request.method.decode("ascii", "replace")
        if request.method in KNOWN_METHODS:
            allowed = ", ".join(m.decode("ascii") for m in exc.allowedMethods)
            request.setHeader(b"allow", allowed)
            detail = (
                f"Your browser approached me (at {request.uri.decode('latin-1')}) with the method "
                f'"{method}". I only allow the method{"s" if len(exc.allowedMethods) != 1 else ""} '
                f"{allowed} here."
            )
            return render_error(request, 405, "Method Not Allowed", detail)
        return render_error(request, 501, "Huh?", f"I don't know how to treat a {method} request.")

    def failure_page(self, request: Request, exc: BaseException) -> bytes:
        """The page for an exception raised while rendering: 400 for a malformed
        form or query, otherwise 500 (logged with its traceback), with none of
        the headers and cookies the resource had set."""
        if isinstance(exc, FormError):
            return render_error(request, 400, "Bad Request", f"The request's parameters are malformed: {exc}")
        log.error("error rendering %r", request, exc_info=exc)
        for name, _ in list(request.responseHeaders.getAllRawHeaders()):
            request.responseHeaders.removeHeader(name)
        for name, value in self.extra_headers:
            request.responseHeaders.addRawHeader(name, value)
        request.cookies.clear()
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if self.displayTracebacks:
            return traceback_page(exc)
        # A porting mistake's own message says how to fix it; any other stays in the log.
        hint = f"<p>{escape(str(exc))}</p>" if isinstance(exc, DeferredIdiomError) else ""
        return (
            "<html><head><title>Processing Failed</title></head>"
            f"<body><b>Processing Failed</b>{hint}</body></html>"
        ).encode()

    def log(self, request: Request) -> None:
        if self.access_log is not None:
            self.access_log.write(request)

    def flush_log(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()


class _WholeServer(Resource):
    """What ``OPTIONS *`` asks about: the server as a whole."""

    isLeaf = True

    def render_OPTIONS(self, request: Request) -> bytes:
        request.setHeader(b"allow", b"GET, HEAD, POST, OPTIONS")
        return b""


_WHOLE_SERVER = _WholeServer()


class Server(HTTPServer):
    """Serves a Site on listeners until ``stop()`` (see ``trioweb.http.Server``).

    The Site's access log is flushed every second while serving and once it
    has stopped. ``replace_site`` sends new requests to another Site (a
    reload); requests in flight finish on the one they started on.
    """

    def __init__(self, site: Site, listeners: list[trio.abc.Listener[Any]]) -> None:
        super().__init__(site.handle, listeners, site.limits, server_header=site.server_header)
        self.site = site

    def replace_site(self, site: Site, handler: Handler | None = None) -> None:
        """Serve new requests from ``site`` (through ``handler`` if given, which
        must end in ``site.handle``)."""
        self.site = site
        self.replace_handler(handler or site.handle)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_log_every_second)
                await super().serve(task_status=task_status)
                nursery.cancel_scope.cancel()
        finally:
            self.site.flush_log()

    async def _flush_log_every_second(self) -> None:
        while True:
            await trio.sleep(1)
            self.site.flush_log()


async def serve(
    site: Site,
    listeners: list[trio.abc.Listener[Any]],
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``site`` on ``listeners`` until cancelled (or until ``Server.stop``)."""
    server = Server(site, listeners)

    async def started_with_server(*, task_status: trio.TaskStatus[None]) -> None:
        await server.serve(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(started_with_server)
        task_status.started(server)

