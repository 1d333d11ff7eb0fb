"""``WSGIResource``: a WSGI application (PEP 3333) as a leaf of the resource tree.

Theory of operation
-------------------
Each request runs the application in a worker thread, at most
``limiter.total_tokens`` at once (``DEFAULT_THREADS`` unless a
``trio.CapacityLimiter`` is given). The threads are the resource's own
(``Workers``, in ``_workers``): a thread is woken per batch of calls (after
the scheduler pass that queued them), holding a token of the limiter while
awake, takes them one after the other and hands results back with
``run_sync_soon``, so that results reach the loop in batches and the loop
and the threads do not trade the GIL, nor ask the limiter, for every
request, as ``trio.to_thread`` or a thread woken per call would. Whatever
the application asks of the server, the thread asks of the event loop with
``trio.from_thread.run``; once the client is gone, those calls fail with
``ClientDisconnected`` and the application stops there:

- ``wsgi.input`` streams the request body: each refill of its buffer waits
  for the next piece from the client; the thread blocks, the loop does not.
  It never reads past the body (Content-Length or the last chunk);
- each non-empty piece of the body (from the iterable or from ``write()``)
  is sent before the application is asked for the next one: a slow client
  slows the application's thread, and memory holds one piece at a time;
- the response head goes out with the first non-empty piece (PEP 3333), so
  until then ``start_response`` may be called again with ``exc_info``.

A list or tuple result (the usual ``[b"Hello World!"]``) comes back from the
thread whole and is written at once with a Content-Length, without another
trip. A ``wsgi.file_wrapper`` around a regular file is sent with
``os.sendfile``. The iterable's ``close()`` is always called, in the thread,
also when the client went away.

Errors: an exception before the head went out gives the Site's 500 page
(details only with ``displayTracebacks``); a request body that is too large,
too slow or malformed gives 413, 408 or 400 instead. After the head went
out, the error is logged and the connection aborted: a truncated body is
never passed off as complete.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import trio

from trioweb.address import UNIXAddress
from trioweb.http import (
    HOP_BY_HOP,
    BodyTimeout,
    BodyTooLarge,
    ConnectionLost,
    ParseError,
    checked_value,
    is_token,
    status_phrase,
)
from trioweb.resource import Resource, render_error
from trioweb.wsgi._workers import STALL_SECONDS, WORKER_IDLE_SECONDS, Workers

if TYPE_CHECKING:
    from trioweb.server import Request

# STALL_SECONDS and WORKER_IDLE_SECONDS: the pool's timings (see docs/wsgi.md).
__all__ = ["DEFAULT_THREADS", "STALL_SECONDS", "WORKER_IDLE_SECONDS", "FileWrapper", "WSGIResource"]

log = logging.getLogger("trioweb.wsgi")

# Worker threads a WSGIResource runs its application in at once, unless given
# a limiter: Twisted's default thread pool grows to 20 threads too.
DEFAULT_THREADS = 20

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
Application = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WSGIResource(Resource):
    """Serves a WSGI application at this point of the tree (a leaf).

    ``WSGIResource(application, limiter=None)``: the application runs in
    worker threads, at most ``limiter.total_tokens`` at once (a
    ``trio.CapacityLimiter``; by default one of ``DEFAULT_THREADS``). Its
    ``SCRIPT_NAME`` is the path the resource is reached at, ``PATH_INFO``
    the rest of the request's path. Twisted's
    ``WSGIResource(reactor, reactor.getThreadPool(), app)`` becomes
    ``WSGIResource(app)``.
    """

    isLeaf = True
    stream_request_body = True  # wsgi.input reads the body as the application asks for it

    def __init__(self, application: Application, *, limiter: trio.CapacityLimiter | None = None) -> None:
        super().__init__()
        self.application = application
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(DEFAULT_THREADS)
        self.workers = Workers(self.limiter)

    def putChild(self, path: bytes, child: Resource) -> None:
        raise RuntimeError("a WSGIResource is a leaf: it cannot have children")

    def render(self, request: Request) -> Awaitable[bytes | None]:
        request.defaultContentType = None  # the application says its content type, or none is sent
        return _Call(self, request).serve()


class FileWrapper:
    """``wsgi.file_wrapper``: a file-like object as a response body.

    Returned by the application as its iterable; when the file is a regular
    file, the server sends it with ``os.sendfile`` from its current position
    (to its end, or Content-Length bytes), otherwise it is read in blocks.
    """

    def __init__(self, filelike: IO[bytes], blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while data := read(self.blksize):
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class ClientDisconnected(OSError):
    """Raised in the application's thread when the client went away (by a
    ``wsgi.input`` read or a ``write``): the application should stop."""


class _BodyError(OSError):
    """Raised by ``wsgi.input`` when the request body cannot be read; it
    answers the request with ``status`` if nothing was sent yet."""

    def __init__(self, status: int, brief: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.brief = brief
        self.detail = detail


class _Call:
    """One request's call of the application: its thread side (``start_response``,
    ``write``, iterating) and its event-loop side (``serve``, sending)."""

    def __init__(self, resource: WSGIResource, request: Request) -> None:
        self.request = request
        self.application = resource.application
        self.workers = resource.workers
        self.token = trio.lowlevel.current_trio_token()
        self.status: tuple[int, bytes | None] | None = None  # the phrase is None when it is the usual one
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.committed = False  # status and headers are on the request: no second start_response
        self.client_gone = False
        self.body_error: _BodyError | None = None
        self.environ = _environ(request, _Input(self) if request.has_body else _NO_BODY)

    # -- the event loop's side ------------------------------------------------

    async def serve(self) -> bytes | None:
        request = self.request
        try:
            whole = await self.workers.run(self.run_application, self.token)
            if whole is not None:
                self.commit()
                for data in whole:
                    if type(data) is not bytes:
                        raise TypeError(f"the WSGI application gave {type(data).__name__}, not bytes")
                    request.write(data)
            elif not self.committed:
                self.commit()  # an empty body
            request.finish()
        except Exception as exc:
            if self.client_gone:
                return None
            if request.startedWriting:
                log.error("WSGI application %r failed after its response started; connection aborted",
                          self.application, exc_info=exc)
                request.loseConnection()
                return None
            if self.body_error is not None:
                error = self.body_error
                return render_error(request, error.status, error.brief, error.detail)
            raise  # the Site's 500 page
        return None


    def commit(self) -> None:
        """Put the status and headers the application gave on the request."""
        if self.status is None:
            raise RuntimeError("the WSGI application did not call start_response")
        if not self.committed:
            self.committed = True
            request = self.request
            code, phrase = self.status
            request.setResponseCode(code, phrase)
            headers = request.responseHeaders
            for name, value in self.headers:
                headers.add_checked(name, value)

    async def send(self, data: bytes) -> None:
        self.commit()
        self.request.write(data)
        await self.request.drain()

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        self.commit()
        if not self.request.responseHeaders.hasHeader(b"content-length"):
            self.request.responseHeaders.set_checked(b"content-length", b"%d" % count)
        await self.request.sendfile(fd, offset, count)

    # -- the application's thread -------------------------------------------------

    def in_loop(self, function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await function(*args)`` in the event loop, from the thread;
        ``ClientDisconnected`` once the client is gone."""
        if self.client_gone:
            raise ClientDisconnected("the client went away")
        try:
            return trio.from_thread.run(function, *args, trio_token=self.token)
        except (trio.Cancelled, ConnectionLost, trio.BrokenResourceError, trio.RunFinishedError):
            self.client_gone = True
            raise ClientDisconnected("the client went away") from None

    def run_application(self) -> Iterable[bytes] | None:
        """Call the application and send what it gives; return a list or tuple
        it gave before anything was sent, for the loop to write whole."""
        result = self.application(self.environ, self.start_response)
        try:
            if type(result) in (list, tuple) and not self.committed:
                return result
            if isinstance(result, FileWrapper) and self.sent_by_kernel(result):
                return None
            for data in result:
                if type(data) is not bytes:
                    raise TypeError(f"the WSGI application gave {type(data).__name__}, not bytes")
                if data:
                    if self.status is None:
                        raise RuntimeError("the WSGI application gave a body before calling start_response")
                    if not self.committed and self.declared_length() == len(data):
                        return (data,)  # all the body it declared: the response is complete, close() follows
                    self.in_loop(self.send, data)
            return None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def declared_length(self) -> int | None:
        """The Content-Length the application gave, if it gave a valid one."""
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    def sent_by_kernel(self, wrapper: FileWrapper) -> bool:
        """Send a wrapped regular file with sendfile; False if it is not one."""
        try:
            fd = wrapper.filelike.fileno()
            offset = wrapper.filelike.tell()
            info = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return False
        if self.status is None or not stat.S_ISREG(info.st_mode):
            return False
        count = max(0, info.st_size - offset)
        declared = self.declared_length()
        if declared is not None:
            count = min(count, declared)
        self.in_loop(self.send_file, fd, offset, count)
        return True

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        parsed_status = _STATUSES.get(status) if type(status) is str else None
        if parsed_status is None:
            parsed_status = _parse_status(status)
        self.headers = _remembered_headers(headers)
        self.status = parsed_status
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable ``start_response`` returns (for old applications)."""
        if self.status is None:
            raise RuntimeError("write() called before start_response")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if data:
            self.in_loop(self.send, data)


# Statuses and header lists checked once and remembered (at most _REMEMBERED
# of each): an application gives the same few over and over. Keys are str
# tuples (immutable); a header list with another item type is checked each time.
_REMEMBERED = 512
_STATUSES: dict[str, tuple[int, bytes | None]] = {}
_HEADER_LISTS: dict[tuple[Any, ...], tuple[tuple[bytes, bytes], ...]] = {}


def _parse_status(status: str) -> tuple[int, bytes | None]:
    """(code, phrase), the phrase None when it is the usual one for the code."""
    if type(status) is not str:
        raise TypeError(f"the WSGI status must be a str, not {type(status).__name__}")
    code, space, phrase = status.partition(" ")
    if len(code) != 3 or not code.isdigit() or not space or int(code) < 100:
        raise ValueError(f"malformed WSGI status {status!r} (wanted e.g. '200 OK')")
    number = int(code)
    raw_phrase = checked_value(phrase.encode("latin-1"))
    parsed = number, (None if raw_phrase == status_phrase(number) else raw_phrase)
    if len(_STATUSES) < _REMEMBERED:
        _STATUSES[status] = parsed
    return parsed


def _remembered_headers(headers: list[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    try:
        key = tuple(headers) if type(headers) is list else None
        checked = _HEADER_LISTS.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable item: checked below, and refused
        key = checked = None
    if checked is None:
        checked = _checked_headers(headers)
        if key is not None and len(_HEADER_LISTS) < _REMEMBERED:
            _HEADER_LISTS[key] = checked
    return checked


def _checked_headers(headers: list[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    if type(headers) is not list:
        raise TypeError(f"the WSGI headers must be a list, not {type(headers).__name__}")
    checked = []
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            raise TypeError(f"a WSGI header must be a tuple of two str, not {pair!r}")
        name = pair[0].encode("latin-1").lower()
        if not is_token(name):
            raise ValueError(f"invalid header name {pair[0]!r}")
        if name in HOP_BY_HOP:
            raise ValueError(f"a WSGI application may not set the hop-by-hop header {pair[0]!r}")
        checked.append((name, checked_value(pair[1].encode("latin-1"))))
    return tuple(checked)


class _Input:
    """``wsgi.input``: the request body, read from the application's thread."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self._buffer = bytearray()
        self._pieces: AsyncIterator[bytes] | None = None
        self._ended = False

    async def _next_piece(self) -> bytes:
        if self._pieces is None:
            self._pieces = self._call.request.body_stream()
        try:
            return await anext(self._pieces)
        except StopAsyncIteration:
            return b""
        except BodyTooLarge:
            error = _BodyError(413, "Request Entity Too Large", "The request body is larger than allowed here.")
        except BodyTimeout:
            error = _BodyError(408, "Request Timeout", "The request body did not arrive in time.")
        except ParseError:
            error = _BodyError(400, "Bad Request", "The request body is malformed.")
        self._call.body_error = error
        raise error

    def _fill(self) -> bool:
        """One more piece of the body into the buffer; False at its end."""
        if self._ended:
            return False
        piece = self._call.in_loop(self._next_piece)
        if not piece:
            self._ended = True
            return False
        self._buffer += piece
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                return self._take(end + 1 if limit is None else min(end + 1, limit))
            if limit is not None and len(self._buffer) >= limit:
                return self._take(limit)
            searched = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer) if limit is None else limit)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _NoBody:
    """``wsgi.input`` of a request without a body (shared: it keeps no state)."""

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


_NO_BODY = _NoBody()


class _ErrorLog:
    """``wsgi.errors``: text written by applications, logged line by line as errors."""

    def __init__(self) -> None:
        self._partial = threading.local()

    def write(self, text: str) -> None:
        lines = (getattr(self._partial, "text", "") + text).split("\n")
        self._partial.text = lines.pop()
        for line in lines:
            log.error("%s", line)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        rest = getattr(self._partial, "text", "")
        if rest:
            self._partial.text = ""
            log.error("%s", rest)


_ERRORS = _ErrorLog()
# Header names never passed to the application: the body's (they have their own
# keys), and Proxy (httpoxy: HTTP_PROXY is read as a proxy setting by some libraries).
_NOT_PASSED = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH", b"proxy": ""}
# Remembered (at most _REMEMBERED_NAMES of each), as requests repeat the same few:
_HEADER_KEYS: dict[bytes, str] = {}  # b"user-agent" → "HTTP_USER_AGENT"
_NATIVE: dict[bytes, str] = {}  # methods and protocols as native strings: b"GET" → "GET"
_SERVER_NAMES: dict[bytes, str] = {}  # Host header → SERVER_NAME: b"example.com:8080" → "example.com"
_REMEMBERED_NAMES = 256
# The keys that are the same for every request, copied into each environ.
_CONSTANT = {
    "wsgi.version": (1, 0),
    "wsgi.input_terminated": True,
    "wsgi.errors": _ERRORS,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
}


def _native(raw: bytes) -> str:
    """``raw`` decoded as latin-1 (a method or protocol), remembered."""
    text = _NATIVE.get(raw)
    if text is None:
        text = raw.decode("latin-1")
        if len(_NATIVE) < _REMEMBERED_NAMES:
            _NATIVE[raw] = text
    return text


def _environ(request: Request, body: _Input | _NoBody) -> dict[str, Any]:
    """The WSGI environ of ``request`` (PEP 3333)."""
    environ = _CONSTANT.copy()
    scheme = "https" if request.isSecure() else "http"
    environ["wsgi.url_scheme"] = scheme
    environ["wsgi.input"] = body
    environ["REQUEST_METHOD"] = _native(request.method)
    environ["SCRIPT_NAME"] = "/" + b"/".join(request.prepath).decode("latin-1") if request.prepath else ""
    environ["PATH_INFO"] = "/" + b"/".join(request.postpath).decode("latin-1") if request.postpath else ""
    uri = request.uri
    environ["QUERY_STRING"] = uri.partition(b"?")[2].decode("latin-1") if b"?" in uri else ""
    host_header = request.host_header
    server_name = _SERVER_NAMES.get(host_header) if host_header else None
    if server_name is None:
        server_name = request.getRequestHostname().decode("latin-1")
        if host_header and len(_SERVER_NAMES) < _REMEMBERED_NAMES:
            _SERVER_NAMES[host_header] = server_name
    environ["SERVER_NAME"] = server_name
    environ["SERVER_PORT"] = _server_port(request, scheme)
    environ["SERVER_PROTOCOL"] = _native(request.clientproto)
    client = request.getClientAddress()
    if not isinstance(client, UNIXAddress):
        environ["REMOTE_ADDR"] = client.host
        environ["REMOTE_PORT"] = str(client.port)
    for name, values in request.requestHeaders.getAllRawHeaders():
        key = _HEADER_KEYS.get(name)
        if key is None:
            if b"_" in name:
                # X_Auth_User would pass for X-Auth-User (CVE-2015-0219): dropped, as nginx does.
                continue
            key = _NOT_PASSED.get(name)
            if key is None:
                key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if len(_HEADER_KEYS) < _REMEMBERED_NAMES:
                _HEADER_KEYS[name] = key
        if key:
            if len(values) == 1:
                environ[key] = values[0].decode("latin-1")
            else:
                environ[key] = (b"; " if name == b"cookie" else b",").join(values).decode("latin-1")
    return environ


def _server_port(request: Request, scheme: str) -> str:
    host = request.getHost()
    if not isinstance(host, UNIXAddress):
        return str(host.port)
    # A UNIX socket (a personal server behind the front): the port the client named.
    authority = request.host_header or b""
    _, colon, port = authority.rpartition(b":")
    if colon and port.isdigit() and not authority.endswith(b"]"):
        return port.decode("ascii")
    return "443" if scheme == "https" else "80"
