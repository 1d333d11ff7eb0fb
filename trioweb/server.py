"""``Site`` (a resource tree served over HTTP) and ``Server`` (its listeners).

``Site.handle`` is what the HTTP engine calls for each request head: it builds
a ``Request``, walks the resource tree, reads the body (bounded by the
resource's limit), renders, and makes sure every request ends with exactly
one complete response or an aborted connection:

- a render that returns ``bytes`` is answered at once (no task is started);
- ``NOT_DONE_YET`` or an ``async def`` render runs in the request's own
  nursery; the response is flushed as it is written. If it is still running
  after ``WATCH_AFTER`` (50 ms), a watcher joins it that notices a client
  going away (cancelling the nursery). Most deferred responses are done
  sooner, and spare the watcher's task, read and cancellation, which would
  cost more than the rest of a quick response. A client that leaves is
  noticed when the watcher starts, or at the first write after it left;
- an exception before anything was sent gives a 500 page (details only with
  ``displayTracebacks``); after that, the connection is aborted so a
  truncated body is never passed off as complete.

``Server`` serves a Site on listeners (``trioweb.http.Server`` does the
accepting, the connection cap and the graceful stop).
"""

from __future__ import annotations

import inspect
import logging
import tempfile
import traceback
from functools import partial
from html import escape
from collections.abc import Callable, Coroutine
from typing import IO, Any

import trio

from trioweb._accesslog import AccessLog
from trioweb._forms import FormError
from trioweb._request import CACHED, Request
from trioweb._version import __version__
from trioweb.http import (
    BodyTimeout,
    BodyTooLarge,
    ConnectionLost,
    HTTPConnection,
    Limits,
    ParseError,
    RequestHead,
)
from trioweb.http import Server as HTTPServer
from trioweb.resource import (
    KNOWN_METHODS,
    NOT_DONE_YET,
    Resource,
    UnsupportedMethod,
    error_page,
    getChildForRequest,
)

__all__ = ["CACHED", "NOT_DONE_YET", "ConnectionLost", "Request", "Server", "Site", "serve", "version"]

log = logging.getLogger("trioweb.server")

version = b"trioweb/" + __version__.encode("ascii")

# Bodies up to this size are kept in memory; larger ones spill to a temporary file.
_SPOOL_SIZE = 1024 * 1024
# A deferred response gets its disconnect watcher only if it is still running
# this long after it began (see the module docstring).
WATCH_AFTER = 0.05


class Site:
    """A resource tree and the policy it is served with.

    ``Site(resource, limits=Limits(...), logPath=None, displayTracebacks=False)``.
    ``logPath`` is a file for the combined-format access log (``"-"`` for
    stdout, None for no access log). ``headers`` are added to every response,
    errors included.
    """

    requestFactory = Request
    displayTracebacks = False

    def __init__(
        self,
        resource: Resource,
        *,
        limits: Limits | None = None,
        logPath: str | None = None,
        displayTracebacks: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
        server_header: bytes = version,
    ) -> None:
        self.resource = resource
        self.limits = limits or Limits()
        self.displayTracebacks = displayTracebacks
        self.extra_headers = list(headers or [])
        self.server_header = server_header
        self.access_log = AccessLog.open(logPath) if logPath else None
        self.sessions: dict[bytes, Any] = {}

    # -- traversal ---------------------------------------------------------------

    def getResourceFor(self, request: Request) -> Resource:
        request.site = self
        request.sitepath = request.prepath[:]
        return getChildForRequest(self.resource, request)

    def body_limit_for(self, request: Request) -> int:
        return request._body_limit or self.limits.max_body_size

    # -- one request ---------------------------------------------------------------

    async def handle(self, channel: HTTPConnection, head: RequestHead) -> None:
        """Answer one request head arriving on ``channel`` (the HTTP engine's callback)."""
        await self.process(self.requestFactory(self, channel, head))

    async def process(self, request: Request) -> None:
        """Traverse, read the body, render and answer ``request``.

        ``request.prepath``/``postpath`` say where traversal starts: a request
        forwarded from another server arrives with the prefix it was
        published under already in ``prepath``.
        """
        rest = self.start_processing(request)
        if rest is not None:
            await rest

    def start_processing(self, request: Request) -> Coroutine[Any, Any, None] | None:
        """`process` up to its first wait: None if the response is complete,
        else a coroutine to await for the rest (reading the body, or a response
        that outlives render). For callers that spare a task when nothing needs
        to wait (a personal server answering from the rpc connection's reader)."""
        channel = request.channel
        for name, value in self.extra_headers:
            request.responseHeaders.addRawHeader(name, value)
        try:
            if request.uri == b"*":
                result = self._render_star(request)
            else:
                resource = self.getResourceFor(request)
                request._body_limit = resource.max_request_body or self.limits.max_body_size
                if channel.head is not None and channel.head.has_body and not resource.stream_request_body:
                    return self._read_body_and_render(resource, request)
                result = self._render(resource, request)
        except (ConnectionLost, trio.BrokenResourceError):
            return None
        except Exception as exc:
            result = self._failed(request, exc)
        return self._respond(request, result)

    async def _read_body_and_render(self, resource: Resource, request: Request) -> None:
        try:
            if not await self._read_body(request):
                return
            result = self._render(resource, request)
        except (ConnectionLost, trio.BrokenResourceError):
            return
        except Exception as exc:
            result = self._failed(request, exc)
        rest = self._respond(request, result)
        if rest is not None:
            await rest

    def _respond(self, request: Request, result: Any) -> Coroutine[Any, Any, None] | None:
        """Answer with what render returned: at once, or the coroutine that drives a deferred response."""
        if type(result) is bytes and not request._tasks:
            if not request.finished:
                request.write(result)
                request.finish()
            return None
        if type(result) is bytes or result == NOT_DONE_YET or inspect.iscoroutine(result):
            return self._run_deferred(request, result)
        result = self._failed(request, TypeError(f"render returned {type(result).__name__}, not bytes"))
        request.write(result)
        request.finish()
        return None

    def _render(self, resource: Resource, request: Request) -> Any:
        try:
            return resource.render(request)
        except UnsupportedMethod as exc:
            return self._unsupported(request, exc)

    def _render_star(self, request: Request) -> bytes:
        if request.method == b"OPTIONS":
            request.setHeader(b"allow", b"GET, HEAD, POST, OPTIONS")
            return b""
        return self._unsupported(request, UnsupportedMethod([b"OPTIONS"]))

    def _unsupported(self, request: Request, exc: UnsupportedMethod) -> bytes:
        method = request.method.decode("ascii", "replace")
        if request.method in KNOWN_METHODS:
            allowed = ", ".join(m.decode("ascii") for m in exc.allowedMethods)
            request.setResponseCode(405)
            request.setHeader(b"allow", allowed)
            detail = (
                f"Your browser approached me (at {request.uri.decode('latin-1')}) with the method "
                f'"{method}". I only allow the method{"s" if len(exc.allowedMethods) != 1 else ""} '
                f"{allowed} here."
            )
            return self._error_body(request, 405, "Method Not Allowed", detail)
        request.setResponseCode(501)
        return self._error_body(request, 501, "Huh?", f"I don't know how to treat a {method} request.")

    def _error_body(self, request: Request, code: int, brief: str, detail: str) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return error_page(code, brief, detail)

    def _failed(self, request: Request, exc: BaseException) -> bytes:
        """The page for an exception raised while rendering: 400 for a malformed
        form or query, otherwise 500 (logged with its traceback)."""
        if isinstance(exc, FormError):
            request.setResponseCode(400)
            return self._error_body(request, 400, "Bad Request", f"The request's parameters are malformed: {exc}")
        log.error("error rendering %r", request, exc_info=exc)
        for name, _ in list(request.responseHeaders.getAllRawHeaders()):
            request.responseHeaders.removeHeader(name)
        for name, value in self.extra_headers:
            request.responseHeaders.addRawHeader(name, value)
        request.cookies.clear()
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if self.displayTracebacks:
            text = "".join(traceback.format_exception(exc))
            return (
                "<html><head><title>web.Server Traceback (most recent call last)</title></head>"
                f"<body><b>web.Server Traceback (most recent call last):</b><pre>{escape(text)}</pre>"
                "</body></html>\n"
            ).encode("utf-8")
        return (
            b"<html><head><title>Processing Failed</title></head>"
            b"<body><b>Processing Failed</b></body></html>"
        )

    async def _read_body(self, request: Request) -> bool:
        """Read the whole body into ``request.content``; on failure answer and return False."""
        channel = request.channel
        limit = request._body_limit
        declared = channel.declared_body_size()
        content: IO[bytes]
        if declared is not None and declared <= _SPOOL_SIZE:
            content = request.content
        else:
            content = tempfile.SpooledTemporaryFile(max_size=_SPOOL_SIZE)
        try:
            while piece := await channel.receive_body_chunk(limit):
                content.write(piece)
        except BodyTooLarge:
            self._answer_error(request, 413, "Request Entity Too Large",
                               f"The request body is larger than the {limit} bytes allowed here.")
            return False
        except BodyTimeout:
            self._answer_error(request, 408, "Request Timeout", "The request body did not arrive in time.")
            return False
        except ParseError as exc:
            self._answer_error(request, exc.status, "Bad Request", "The request body is malformed.")
            return False
        content.seek(0)
        request.content = content
        return True

    def _answer_error(self, request: Request, code: int, brief: str, detail: str) -> None:
        if request.channel.response_started:
            request.channel.lost = True  # too late for a status: abort
            return
        request.setResponseCode(code)
        request.write(self._error_body(request, code, brief, detail))
        request.finish()

    async def _run_deferred(self, request: Request, result: Any) -> None:
        """Drive a response that outlives ``render`` (see the module docstring)."""
        channel = request.channel
        request._deferred = True
        failure: list[BaseException] = []
        running = [0]  # user tasks still running in the request nursery

        async with trio.open_nursery() as nursery:

            async def user_task(fn: Any, *args: Any) -> None:
                try:
                    await fn(*args)
                except ConnectionLost:
                    pass
                except Exception as exc:
                    failure.append(exc)
                    nursery.cancel_scope.cancel()
                finally:
                    running[0] -= 1
                    request._notify_change()
                    if request._wakeup is not None:
                        request._wakeup.set()

            async def watch() -> None:
                await channel.watch_for_disconnect()
                request._notify_change()  # waiters in notifyFinish see the loss first
                nursery.cancel_scope.cancel()

            def start(fn: Any, *args: Any) -> None:
                running[0] += 1
                nursery.start_soon(user_task, fn, *args)

            request._nursery = _NurseryFacade(start)  # type: ignore[assignment]
            for fn, args in request._tasks:
                start(fn, *args)
            request._tasks.clear()
            late_watchers = _late_watchers()
            late_watchers.add(request, partial(nursery.start_soon, watch))
            try:
                if type(result) is bytes and not request.finished:
                    request.write(result)
                    request.finish()
                elif inspect.iscoroutine(result):
                    try:
                        value = await result
                    except UnsupportedMethod as exc:
                        value = self._unsupported(request, exc)
                    except ConnectionLost:
                        value = None
                    except Exception as exc:
                        failure.append(exc)
                        value = None
                    if type(value) is bytes and not request.finished and not failure:
                        request.write(value)
                        request.finish()
                while not failure and not channel.lost:
                    request._wakeup = trio.Event()
                    if channel.has_output() or (request._pending and not channel.response_started):
                        await request.drain()
                        continue
                    if request.finished and running[0] == 0:
                        break
                    await request._wakeup.wait()
            except ConnectionLost:
                pass
            finally:
                late_watchers.discard(request)
            nursery.cancel_scope.cancel()
        request._nursery = None
        if failure and not channel.lost:
            if channel.response_started:
                log.error("error after the response started for %r", request, exc_info=failure[0])
                channel.lost = True  # abort: never pass a truncated body off as complete
            else:
                request._pending.clear()
                request.sentLength = 0
                request.finished = False
                page = self._failed(request, failure[0])
                request.write(page)
                request.finish()
        if not request.finished and not channel.lost and running[0] == 0 and not failure:
            log.error("%r: the response was never finished", request)

    # -- access log ------------------------------------------------------------------

    def log(self, request: Request) -> None:
        if self.access_log is not None:
            self.access_log.write(request)

    def flush_log(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()


class _LateWatchers:
    """Starts the disconnect watchers of deferred responses that are still running
    ``WATCH_AFTER`` seconds after they began (see the module docstring).

    One per trio run, driven by a system task that sleeps until the oldest
    response is due, and parks while there is none.
    """

    def __init__(self) -> None:
        # Response -> (when its watcher is due, how to start it); in order of arrival, so of due time.
        self._due: dict[object, tuple[float, Callable[[], None]]] = {}
        self._lot = trio.lowlevel.ParkingLot()

    def add(self, key: object, start_watcher: Callable[[], None]) -> None:
        self._due[key] = (trio.current_time() + WATCH_AFTER, start_watcher)
        if len(self._due) == 1:
            self._lot.unpark_all()

    def discard(self, key: object) -> None:
        self._due.pop(key, None)

    async def run(self) -> None:
        due = self._due
        while True:
            while not due:
                await self._lot.park()
            key = next(iter(due))
            when, start_watcher = due[key]
            if when > trio.current_time():
                await trio.sleep_until(when)
                continue  # the response may have finished meanwhile
            del due[key]
            start_watcher()


_late_watchers_var: trio.lowlevel.RunVar[_LateWatchers] = trio.lowlevel.RunVar("trioweb_late_watchers")


def _late_watchers() -> _LateWatchers:
    """This trio run's `_LateWatchers`, and its task, made on first use."""
    try:
        return _late_watchers_var.get()
    except LookupError:
        watchers = _LateWatchers()
        _late_watchers_var.set(watchers)
        trio.lowlevel.spawn_system_task(watchers.run, name="trioweb late disconnect watchers")
        return watchers


class _NurseryFacade:
    """What ``request.start_soon`` reaches while the request nursery is open."""

    __slots__ = ("start_soon",)

    def __init__(self, start_soon: Any) -> None:
        self.start_soon = start_soon


class Server(HTTPServer):
    """Serves a Site on listeners until ``stop()`` (see ``trioweb.http.Server``);
    the Site's access log is flushed once it has stopped."""

    def __init__(self, site: Site, listeners: list[trio.abc.Listener[Any]]) -> None:
        super().__init__(site.handle, listeners, site.limits, server_header=site.server_header)
        self.site = site

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await super().serve(task_status=task_status)
        finally:
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

