"""``Request``: one HTTP request as resources see it, with Twisted's names, and its life.

A Request is created by the ``Site`` for each request head. Resources read
it (``method``, ``uri``, ``args``, ``content``, ``prepath``/``postpath``,
``requestHeaders``, ``getCookie``...) and answer through it (``setHeader``,
``setResponseCode``, ``write``, ``finish``, ``redirect``, ``addCookie``).

Writing never blocks: ``write`` queues bytes, and the connection sends them
(once for a synchronous render, or as they come for a response that
outlives ``render``). ``await request.drain()`` waits until queued bytes are
sent, which is how a long body is produced with backpressure.

Until the first byte of the body is sent, the response head is not framed;
so a body written and finished within one render gets a Content-Length,
and a body that trickles gets chunked (HTTP/1.1) or close-delimited framing.

Theory of operation
-------------------
``process()`` takes a request from its head to its last byte, and this
module is the only one that touches a Request's private state or its
channel (the HTTP connection, or a personal server's ``RemoteChannel``):

- the Site finds the resource (``Site.getResourceFor``); a resource that
  cannot take the method answers 405 (or 501) before any of the body is read
  (``takes_method``: a 405 is the answer whatever the body's size); the body is read
  into ``content`` first (bounded by the resource's ``max_request_body`` or
  the Site's limit: 413, 408 or 400 otherwise), unless the resource streams
  it (``stream_request_body``);
- a render that returns ``bytes`` is answered at once (no task is started);
- ``NOT_DONE_YET`` or an ``async def`` render is driven by ``_run_deferred``:
  the render in the connection's task under a cancel scope, the tasks of
  ``start_soon`` in the channel's ``task_host`` (the server's nursery; a
  nursery of the request's own for a channel without one), each under its
  own cancel scope; they are cancelled together when one fails or the client
  goes away, and the request ends only once all have returned. The response
  is flushed as it is written. If it is still running ``WATCH_AFTER`` (50 ms)
  after it began, a watcher joins it that notices a client going away
  (cancelling the render and the tasks). Most deferred responses are done
  sooner, and spare the watcher's task, read and cancellation, which would
  cost more than the rest of a quick response. A render that never calls
  ``start_soon`` (an ASGI application) may run to its first wait inside
  ``render`` (``run_until_it_waits``): if it does not wait it costs no more
  than a synchronous render, and if it does the rest runs without a cancel
  scope of its own (a client going away cancels the connection's task);
- an exception before the response started gives a 500 page (details only
  with the Site's ``displayTracebacks``; bytes the resource wrote and that
  were still queued are dropped), a malformed form or query a 400; after the
  response started, the error is logged and the connection is aborted so
  that a truncated body is never passed off as complete (``_failure``). Every request ends with exactly one complete
  response or an aborted connection.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterable
from functools import partial
from io import BytesIO
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import trio

from trioweb._cookies import parse_cookies, set_cookie_value
from trioweb._delayed import delayed_starts
from trioweb._encoding import READ_PIECE, ResponseEncoding, file_pieces
from trioweb._forms import FileUpload, parse_multipart, parse_query
from trioweb._session import Session, session_for
from trioweb.address import Address, tcp_address
from trioweb.http import (
    CACHED,
    BodyTimeout,
    BodyTooLarge,
    Channel,
    ConnectionLost,
    Headers,
    ParseError,
    RequestHead,
    checked_value,
    http_date,
    parse_http_date,
    read_body,
    read_pipe,
    status_has_no_body,
    status_phrase,
)
from trioweb.resource import NOT_DONE_YET, Resource, UnsupportedMethod, render_error
from trioweb.urlpath import URLPath, origin_form, request_hostname, url_for

if TYPE_CHECKING:
    from trioweb.server import Site

log = logging.getLogger("trioweb.server")

# Bodies up to this size are read into memory; larger ones spill to a temporary file.
SPOOL_SIZE = 1024 * 1024
# A deferred response gets its disconnect watcher only if it is still running
# this long after it began (see the theory of operation).
WATCH_AFTER = 0.05


_PROTOCOLS = {b"1.1": b"HTTP/1.1", b"1.0": b"HTTP/1.0"}  # clientproto, made once


class DeferredIdiomError(TypeError):
    """Twisted's Deferred API used where trioweb has an awaitable; the message
    says what to write instead (it is shown on the 500 page: it reveals
    nothing of the site but how to port it)."""


_NOTIFY_FINISH_HINT = (
    "request.notifyFinish() is awaitable, not a Deferred: instead of d.addCallback/d.addErrback, "
    "write 'await request.notifyFinish()' in an async def render (ConnectionLost is raised if the "
    "client left first), and 'await trio.sleep(n)' instead of reactor.callLater; "
    "see docs/porting.md, 'Deferreds and the reactor'"
)


class _FinishNotice:
    """What ``notifyFinish`` returns: awaited, it waits for the end of the
    response; Twisted's Deferred methods raise ``DeferredIdiomError``. The
    wait is created only when awaited, so an unawaited notice leaves no
    never-awaited coroutine behind."""

    __slots__ = ("_request",)

    def __init__(self, request: Request) -> None:
        self._request = request

    def __await__(self) -> Any:
        return self._request._wait_finished().__await__()

    def addCallback(self, *args: Any, **kwargs: Any) -> Any:
        raise DeferredIdiomError(_NOTIFY_FINISH_HINT)

    addErrback = addBoth = addCallbacks = addCallback


class Request:
    """An HTTP request and the response being made for it."""

    defaultContentType: bytes | None = b"text/html"

    # Defaults every request starts with, kept on the class so that a request
    # stores only what differs (a measurable share of a small response's cost).
    code = 200
    code_message: bytes | None = None
    sentLength = 0
    finished = False
    session: Session | None = None  # the one getSession gave, of the request's security
    _insecure_session: Session | None = None  # getSession(forceNotSecure=True) on a secure request
    _encoding: ResponseEncoding | None = None  # set by an EncodingResourceWrapper
    _args: dict[bytes, list[bytes]] | None = None
    _files: dict[bytes, list[FileUpload]] | None = None
    _received_cookies: dict[bytes, bytes] | None = None
    _deferred = False  # the response outlives render: writes wake the flusher
    _wakeup: trio.Event | None = None
    _done: trio.Event | None = None  # created when someone waits for a change
    # While the response is driven by _run_deferred: how start_soon starts a task.
    _start_task: Callable[..., None] | None = None
    # Set by run_until_it_waits: how a render already begun is cancelled (the connection's task).
    _cancel_render: Callable[[], None] | None = None
    _send_lock: trio.Lock | None = None
    _drains = 0
    # Tasks start_soon was asked for before the request had a host for them (made on first use).
    _tasks: list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]] | None = None
    _body_limit = 0  # set by process() once the resource is known, before anything reads the body
    _force_secure: bool | None = None  # set by setHost (a trusted proxy said how the client came)
    # What a resource adds to the access log's JSON line (the front: the user and the backend).
    log_fields: dict[str, Any] | None = None
    _content: IO[bytes] | None = None  # see content

    def __init__(self, site: Site, channel: Channel, head: RequestHead) -> None:
        self.site = site
        self.channel = channel
        self.started_ns = time.monotonic_ns()  # the access log's duration
        self.method = head.method
        self.uri = head.target
        self.clientproto = _PROTOCOLS.get(head.version) or b"HTTP/" + head.version
        self.requestHeaders = Headers.from_trusted_map(head.headers)
        self.responseHeaders = Headers()
        self.client: Address = channel.client
        self.host: Address = channel.host
        self._host_header = head.host
        self.cookies: list[bytes] = []
        self.sitepath: list[bytes] = []
        self._pending: list[bytes] = []  # body written before the head is framed
        target = head.target
        if target[:1] != b"/" and target != b"*":
            target = origin_form(target)
        path, _, self._query = target.partition(b"?")
        self.path = path
        self.prepath: list[bytes] = []
        segments = path[1:].split(b"/")
        self.postpath: list[bytes] = [unquote_to_bytes(s) for s in segments] if b"%" in path else segments

    # -- what the client sent ---------------------------------------------------

    @property
    def content(self) -> IO[bytes]:
        """The request body (read whole before render; empty without a body)."""
        content = self._content
        if content is None:
            # Made on first use: most requests have no body, and most renders never look.
            content = self._content = BytesIO()
        return content

    @content.setter
    def content(self, value: IO[bytes]) -> None:
        self._content = value

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        """Query parameters, plus the fields of a form body on POST (a file
        part's content too, as in Twisted; see ``files`` for its name and type)."""
        if self._args is None:
            args = parse_query(self._query)
            if self.method == b"POST":
                ctype = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
                kind = ctype.split(b";", 1)[0].strip().lower()
                if kind == b"application/x-www-form-urlencoded":
                    for name, values in parse_query(self._body_bytes()).items():
                        args.setdefault(name, []).extend(values)
                elif kind == b"multipart/form-data":
                    for name, values in self._multipart(ctype).items():
                        args.setdefault(name, []).extend(values)
                    for name, uploads in (self._files or {}).items():
                        args.setdefault(name, []).extend(upload.read() for upload in uploads)
            self._args = args
        return self._args

    @args.setter
    def args(self, value: dict[bytes, list[bytes]]) -> None:
        self._args = value

    @property
    def files(self) -> dict[bytes, list[FileUpload]]:
        """The file parts of a ``multipart/form-data`` POST body, by field name:
        each with its ``filename``, ``content_type`` and ``file`` (spooled to
        disk when large), for uploads too large to want as bytes in ``args``."""
        if self._files is None:
            ctype = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
            if self.method == b"POST" and ctype.split(b";", 1)[0].strip().lower() == b"multipart/form-data":
                self._multipart(ctype)
            else:
                self._files = {}
        return self._files or {}

    def _multipart(self, ctype: bytes) -> dict[bytes, list[bytes]]:
        """Parse the multipart body: its fields are returned, its files kept in ``_files``."""
        position = self.content.tell()
        self.content.seek(0)
        try:
            fields, self._files = parse_multipart(self.content, ctype)
        finally:
            self.content.seek(position)
        return fields

    def _body_bytes(self) -> bytes:
        position = self.content.tell()
        self.content.seek(0)
        data = self.content.read()
        self.content.seek(position)
        return data

    @property
    def received_cookies(self) -> dict[bytes, bytes]:
        if self._received_cookies is None:
            self._received_cookies = parse_cookies(self.requestHeaders.getRawHeaders(b"cookie") or [])
        return self._received_cookies

    def getHeader(self, key: bytes | str) -> Any:
        """The last value of a request header, or None."""
        if type(key) is bytes:
            return self.requestHeaders.last_value(key.lower())
        values = self.requestHeaders.getRawHeaders(key)
        return values[-1] if values else None

    def getCookie(self, key: bytes) -> bytes | None:
        return self.received_cookies.get(key)

    def getAllHeaders(self) -> dict[bytes, bytes]:
        return {name: values[-1] for name, values in self.requestHeaders.getAllRawHeaders()}

    def getClientAddress(self) -> Address:
        return self.client

    def getHost(self) -> Address:
        return self.host

    def isSecure(self) -> bool:
        if self._force_secure is not None:
            return self._force_secure
        return self.channel.is_secure

    def setHost(self, host: bytes, port: int, ssl: bool = False) -> None:
        """See this request as the client sent it to ``host:port`` over https
        (``ssl``) or http, as a proxy in front of this server received it
        (Twisted's name; what a trusted proxy's headers and VHostMonster set):
        ``getHost``, ``getRequestHostname``, ``isSecure``, ``prePathURL`` and
        redirects follow. ``Host`` gets no port when it is the scheme's default.
        Unlike Twisted's, ``ssl=False`` makes even a request that came over TLS
        say it is not secure: the client's scheme is what counts."""
        authority = host if port == (443 if ssl else 80) else b"%s:%d" % (host, port)
        self._host_header = authority
        self.requestHeaders.set_checked(b"host", checked_value(authority))
        self.host = tcp_address(host.decode("latin-1"), port)
        self._force_secure = bool(ssl)

    def getRequestHostname(self) -> bytes:
        """The host the client asked for, without port; our own address if it named none."""
        return request_hostname(self._host_header, self.host)

    @property
    def host_header(self) -> bytes | None:
        """The authority the client asked for, as it sent it (``Host``, or an
        absolute-form target's), port included; None if it gave none."""
        return self._host_header

    @property
    def has_body(self) -> bool:
        """The request comes with a body (a Content-Length above 0, or chunked)."""
        head = self.channel.head
        return head is not None and head.has_body

    @property
    def declared_body_size(self) -> int | None:
        """The body's size as the request declares it: its Content-Length, 0
        without a body, None when its size is not known before its end (chunked)."""
        return self.channel.declared_body_size()

    def prePathURL(self) -> bytes:
        """The URL of the resource traversal reached, as the client named the server."""
        return url_for(self._host_header, self.host, self.isSecure(), self.prepath)

    def URLPath(self) -> URLPath:
        return URLPath.fromBytes(self.prePathURL())

    def childLink(self, name: bytes) -> bytes:
        base = self.prepath[-1] if self.prepath and self.prepath[-1] else b"."
        if self.postpath:
            return name
        return base + b"/" + name if base != b"." else name

    async def body_stream(self) -> AsyncIterator[bytes]:
        """The request body in pieces, for resources with ``stream_request_body``.

        Bounded by the resource's ``max_request_body`` (or the Site's): past
        it, ``BodyTooLarge``; a client that stalls, ``BodyTimeout``.
        """
        limit = self._body_limit
        while True:
            piece = await self.channel.receive_body_chunk(limit)
            if not piece:
                return
            yield piece

    def getSession(self, sessionInterface: Any = None, forceNotSecure: bool = False) -> Any:
        """The client's session (its cookie's, or a new one with its cookie set).

        With ``sessionInterface``, the session's component for it instead.
        See ``trioweb._session`` for the cookie and the limits.
        """
        session = session_for(self, forceNotSecure)
        return session.getComponent(sessionInterface) if sessionInterface is not None else session

    # -- the response -------------------------------------------------------------

    @property
    def startedWriting(self) -> bool:
        """The response head is on its way: the status and headers can no longer change."""
        return self.channel.response_started

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if not isinstance(code, int) or not 100 <= code <= 999:
            raise TypeError(f"HTTP response code must be an int from 100 to 999, not {code!r}")
        if message is not None:
            message = checked_value(message)
        self.code = code
        self.code_message = message

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        self.responseHeaders.set_value(name, value)

    def redirect(self, url: bytes | str) -> None:
        self.setResponseCode(302)
        self.setHeader(b"location", url)

    def addCookie(
        self,
        k: bytes | str,
        v: bytes | str,
        expires: bytes | str | None = None,
        domain: bytes | str | None = None,
        path: bytes | str | None = None,
        max_age: bytes | str | int | None = None,
        comment: bytes | str | None = None,
        secure: bool | None = None,
        httpOnly: bool = False,
        sameSite: str | None = None,
    ) -> None:
        """Queue a ``Set-Cookie``; ``;``, CR, LF or NUL in any part is a ValueError."""
        self.cookies.append(set_cookie_value(
            k, v, expires=expires, domain=domain, path=path, max_age=max_age, comment=comment,
            secure=secure, http_only=httpOnly, same_site=sameSite))

    def setLastModified(self, when: float) -> object | None:
        """Set Last-Modified; CACHED (and 304) when the client's copy is as new."""
        when = int(when)
        self.responseHeaders.set_checked(b"last-modified", http_date(when))
        received = self.requestHeaders
        since = received.last_value(b"if-modified-since")
        if since and self.method in (b"GET", b"HEAD") and not received.last_value(b"if-none-match"):
            since_time = parse_http_date(since.split(b";", 1)[0])
            if since_time is not None and since_time >= when:
                self.setResponseCode(304)
                return CACHED
        return None

    def setETag(self, etag: bytes) -> object | None:
        """Set ETag; CACHED (304 on GET/HEAD, 412 otherwise) on an If-None-Match hit."""
        if etag:
            quoted = etag if etag.startswith((b'"', b'W/"')) else b'"%s"' % etag
            self.responseHeaders.set_checked(b"etag", checked_value(quoted))
        match = self.requestHeaders.last_value(b"if-none-match")
        if match:
            tags = [t.strip() for t in match.split(b",")]
            bare = etag.strip(b'"')
            if b"*" in tags or any(t.removeprefix(b"W/").strip(b'"') == bare for t in tags):
                self.setResponseCode(304 if self.method in (b"GET", b"HEAD") else 412)
                return CACHED
        return None

    def write(self, data: bytes) -> None:
        """Queue a piece of the body; after a disconnect it is silently dropped."""
        if self.finished:
            raise RuntimeError("Request.write called on a request after Request.finish was called.")
        if not isinstance(data, bytes):
            raise TypeError(f"Request.write takes bytes, not {type(data).__name__}")
        if self.channel.lost:
            return
        self.sentLength += len(data)
        if not self.channel.response_started:
            self._pending.append(data)
            if self._deferred and self._wakeup is not None:
                self._wakeup.set()
            return
        if self._encoding is not None:
            encoded = self._encoding.encode(data)
            self.sentLength += len(encoded) - len(data)  # the log counts the bytes sent
            data = encoded
        self.channel.write(data)
        if self._wakeup is not None:
            self._wakeup.set()

    def finish(self) -> None:
        """End the response. After a disconnect it does nothing."""
        if self.finished:
            raise RuntimeError("Request.finish called twice")
        self.finished = True
        if self.channel.lost:
            return
        channel = self.channel
        if not channel.response_started:
            self._start_response(content_length=sum(map(len, self._pending)))
        elif self._encoding is not None:
            tail = self._encoding.finish()
            self.sentLength += len(tail)
            channel.write(tail)
        channel.end_response()
        self.site.log(self)
        if self._wakeup is not None:
            self._wakeup.set()

    def loseConnection(self) -> None:
        """Abort the connection where the response is: the client sees it cut
        short, never a truncated body passed off as complete."""
        self.channel.lost = True
        self._notify_change()
        if self._wakeup is not None:
            self._wakeup.set()

    def _start_response(self, content_length: int | None) -> None:
        """Frame the head (and the body queued so far) into the connection's buffer."""
        if self._encoding is not None:
            encoded = self._encoding.begin(self, self._pending, content_length)
            if encoded is None:
                self._encoding = None  # the body goes as it is
            else:
                self._pending, content_length = encoded
                self.sentLength = sum(len(p) for p in self._pending)  # nothing was sent before
        headers = self.responseHeaders
        declared = headers.take_framing()
        if declared is not None:
            if len(declared) != 1 or not declared[0].isdigit():
                raise ValueError(f"invalid Content-Length set by the resource: {declared!r}")
            content_length = int(declared[0])
        pairs = headers.pair_list()
        if (
            self.defaultContentType is not None
            and headers.last_value(b"content-type") is None
            and not status_has_no_body(self.code)
            and (content_length != 0 or self.method == b"HEAD")
        ):
            pairs.append((b"content-type", self.defaultContentType))
        if self.cookies:
            pairs.extend((b"set-cookie", c) for c in self.cookies)
        phrase = self.code_message or status_phrase(self.code)
        channel = self.channel
        channel.start_response(self.code, phrase, pairs, content_length)
        pending = self._pending
        if pending:
            for piece in pending:
                channel.write(piece)
            pending.clear()

    def set_response_encoding(self, encoding: ResponseEncoding) -> None:
        """Send the response through ``encoding`` (what an ``EncodingResourceWrapper`` does)."""
        self._encoding = encoding

    def notifyFinish(self) -> Awaitable[None]:
        """Awaitable that completes when the response is done.

        It raises ``ConnectionLost`` if the client went away first. It is not
        a Deferred: Twisted's ``addCallback``/``addErrback`` on it raise
        ``DeferredIdiomError``, whose message (shown on the 500 page) says
        what to write instead.
        """
        return _FinishNotice(self)

    async def _wait_finished(self) -> None:
        while not self.finished:
            if self.channel.lost:
                raise ConnectionLost("the client went away before the response was finished")
            await self._wait_for_change()
        if self.channel.lost and not self.channel.response_done:
            raise ConnectionLost("the client went away before the response was finished")

    async def _wait_for_change(self) -> None:
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def _notify_change(self) -> None:
        if self._done is not None:
            self._done.set()
            self._done = None

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` beside the render, as in a nursery of the request's own.

        The request lives until the response is finished and every task started
        this way has returned; they are cancelled when the client goes away. An
        exception in a task cancels the render and the other tasks and ends the
        request (500 if nothing was sent yet, otherwise the connection is aborted).
        """
        if self._start_task is not None:
            self._start_task(fn, *args)
        else:
            if self._tasks is None:
                self._tasks = []
            self._tasks.append((fn, args))

    async def drain(self) -> None:
        """Wait until everything written so far has been sent to the client."""
        if self.channel.lost:
            raise ConnectionLost("the client went away")
        if self._pending and not self.channel.response_started:
            self._start_response(content_length=None)
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._sending()
        # Uncontended (the usual case), the lock is taken without a trip
        # through the scheduler; a flush that waits for the client yields
        # anyway, and one that never has to wait yields every few drains so
        # that a fast producer cannot starve the other connections.
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self.channel.flush()
        finally:
            lock.release()
        self._drains += 1
        if self._drains % 8 == 0:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Send part of an open file as (the rest of) the body, with backpressure.

        The response is framed first if needed; set Content-Length beforehand
        to avoid chunked framing (which forgoes ``os.sendfile``).
        """
        await self._send_past_the_queue("sendfile", count, partial(file_pieces, fd, offset, count),
                                        self.channel.send_file, fd, offset, count)

    async def sendpipe(self, fd: int, count: int, on_sent: Callable[[int], None]) -> None:
        """Send the next ``count`` bytes waiting in the pipe ``fd`` as body, with backpressure.

        For bodies relayed without a copy (``rpc.PipePiece``): spliced to the
        client's socket when it is a plain one and the body is not chunked
        (set Content-Length beforehand), else read and sent as bytes.
        ``on_sent`` is called with each amount taken from the pipe.
        """
        await self._send_past_the_queue("sendpipe", count, partial(read_pipe, fd, count, on_sent, READ_PIECE),
                                        self.channel.send_pipe, fd, count, on_sent)

    async def _send_past_the_queue(self, name: str, count: int, pieces: Callable[[], Iterable[bytes]],
                                   send: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Send ``count`` body bytes with ``send(*args)``, a channel's way of
        sending what is not in its queue (a file, a pipe); an encoded body
        cannot go around its encoder, so then ``pieces()`` are written instead."""
        if self.finished:
            raise RuntimeError(f"Request.{name} called after Request.finish")
        if not self.channel.response_started:
            self._start_response(content_length=None)
        if self._encoding is not None:
            for piece in pieces():
                self.write(piece)
                await self.drain()
            return
        self.sentLength += count
        async with self._sending():
            await send(*args)

    def _sending(self) -> trio.Lock:
        """The lock that keeps one send at a time on the channel (made on first use)."""
        if self._send_lock is None:
            self._send_lock = trio.Lock()
        return self._send_lock

    # -- its life: from the head to the last byte (see the theory of operation) --------

    def process(self) -> Coroutine[Any, Any, None] | None:
        """Find the resource, read the body, render and answer, as far as that
        goes without waiting: None if the response is complete, else a
        coroutine to await for the rest (reading the body, or a response
        that outlives render). The Site's ``process`` awaits it; a personal
        server answering from its rpc connection's reader spares a task when
        nothing needs to wait."""
        try:
            resource = self.site.getResourceFor(self)
            self._body_limit = resource.max_request_body or self.site.limits.max_body_size
            if self.has_body and not resource.stream_request_body and takes_method(resource, self.method):
                return self._read_body_and_render(resource)
            result = self._render(resource)
        except (ConnectionLost, trio.BrokenResourceError):
            return None
        except Exception as exc:
            result = self._failure(exc)
            if result is None:
                return None
        return self._answer(result)

    def _failure(self, exc: BaseException) -> bytes | None:
        """What to answer after ``exc`` ended a render: the Site's failure page
        (anything the resource queued is dropped), or None, and the connection
        aborted, if the response had started already."""
        if self.channel.response_started:
            log.error("error after the response started for %r", self, exc_info=exc)
            self.channel.lost = True  # abort: never pass a truncated body off as complete
            return None
        self._pending.clear()
        self.sentLength = 0
        self.finished = False
        return self.site.failure_page(self, exc)

    async def _read_body_and_render(self, resource: Resource) -> None:
        try:
            if not await self._read_body():
                return
            result = self._render(resource)
        except (ConnectionLost, trio.BrokenResourceError):
            return
        except Exception as exc:
            result = self._failure(exc)
            if result is None:
                return
        rest = self._answer(result)
        if rest is not None:
            await rest

    def _render(self, resource: Resource) -> Any:
        try:
            return resource.render(self)
        except UnsupportedMethod as exc:
            return self.site.unsupported_method_page(self, exc)

    def _answer(self, result: Any) -> Coroutine[Any, Any, None] | None:
        """Answer with what render returned: at once, or the coroutine that drives a deferred response."""
        if type(result) is bytes and not self._tasks:
            if not self.finished:
                self.write(result)
                self.finish()
            return None
        if type(result) is bytes or result == NOT_DONE_YET or inspect.iscoroutine(result):
            return self._run_deferred(result)
        page = self.site.failure_page(self, TypeError(f"render returned {type(result).__name__}, not bytes"))
        self.write(page)
        self.finish()
        return None

    async def _read_body(self) -> bool:
        """Read the whole body into ``content``; on failure answer and return False."""
        limit = self._body_limit
        try:
            self.content = await read_body(self.channel, limit, SPOOL_SIZE)
        except BodyTooLarge:
            self._answer_error(413, "Request Entity Too Large",
                               f"The request body is larger than the {limit} bytes allowed here.")
            return False
        except BodyTimeout:
            self._answer_error(408, "Request Timeout", "The request body did not arrive in time.")
            return False
        except ParseError as exc:
            self._answer_error(exc.status, "Bad Request", "The request body is malformed.")
            return False
        return True

    def _answer_error(self, code: int, brief: str, detail: str) -> None:
        if self.channel.response_started:
            self.channel.lost = True  # too late for a status: abort
            return
        self.write(render_error(self, code, brief, detail))
        self.finish()

    def run_until_it_waits(self, render: Coroutine[Any, Any, Any]) -> Any:
        """Run an ``async def`` render up to its first wait, here, for
        ``render()`` to return what this returns; only for a render that never
        calls ``start_soon`` (an ASGI application's, see ``trioweb.asgi``).

        A render that ends without waiting is answered as a synchronous one:
        its value is returned, and no cancel scope, watcher or task is made
        for it. One that waits goes on as any deferred render (a coroutine
        is returned), but in no cancel scope of its own: one cannot be put
        around a coroutine that has started (it may be waiting inside a
        scope of its own), so a client that goes away cancels the
        connection's task instead (``cancel_task``: the connection is lost
        anyway). A channel that cannot do that (a personal server's), or
        has no ``task_host`` for the watcher, gets ``render`` back untouched.
        """
        channel = self.channel
        if getattr(channel, "task_host", None) is None or not hasattr(channel, "cancel_task"):
            return render
        try:
            waiting_on = render.send(None)
        except StopIteration as ended:
            return ended.value
        self._cancel_render = channel.cancel_task
        return _resumed(render, waiting_on)

    async def _run_deferred(self, result: Any) -> None:
        """Drive a response that outlives ``render`` (see the theory of operation).

        The render runs in this task; the tasks of ``start_soon`` and the
        disconnect watcher run in the channel's ``task_host`` (a nursery that
        outlives the request: the server's), or, for a channel without one, in
        a nursery of the request's own.
        """
        host: trio.Nursery | None = getattr(self.channel, "task_host", None)
        if host is not None:
            await self._drive(result, host)
        else:
            async with trio.open_nursery() as nursery:
                await self._drive(result, nursery)

    async def _drive(self, result: Any, host: trio.Nursery) -> None:
        """`_run_deferred` with ``host`` for the request's tasks.

        What a nursery per request would give is kept: the render and every
        task of the request are cancelled together (each in its own cancel
        scope) when one of them fails or the client goes away, and this
        returns only once every task of the request has returned. The render
        is not in a nursery of its own because the exit of one is a trip
        through the scheduler that most deferred responses need no other.
        """
        channel = self.channel
        self._deferred = True
        failure: list[BaseException] = []
        running = 0  # tasks of the request (start_soon's and the watcher) that have not returned
        unfinished = 0  # of those, the start_soon tasks: the response waits for them
        # The render's scope, then its tasks'; a render that began before
        # this (run_until_it_waits) has none: its connection's task is cancelled instead.
        cancel_render = self._cancel_render
        render_scope = trio.CancelScope() if cancel_render is None else None
        scopes: list[trio.CancelScope] = [] if render_scope is None else [render_scope]
        stopped = False
        rendering = True

        def stop() -> None:
            """Cancel the render and the request's tasks (those to come too)."""
            nonlocal stopped
            stopped = True
            for scope in scopes:
                scope.cancel()
            if cancel_render is not None and rendering:
                cancel_render()

        async def hosted(fn: Callable[..., Awaitable[Any]], *args: Any, watcher: bool = False) -> None:
            nonlocal running, unfinished
            scope = trio.CancelScope()
            scopes.append(scope)
            if stopped:
                scope.cancel()
            try:
                with scope:
                    await fn(*args)
            except ConnectionLost:
                pass
            except Exception as exc:
                failure.append(exc)
                stop()
            finally:
                scopes.remove(scope)
                running -= 1
                if not watcher:
                    unfinished -= 1
                self._notify_change()
                if self._wakeup is not None:
                    self._wakeup.set()

        async def watch() -> None:
            await channel.watch_for_disconnect()
            self._notify_change()  # waiters in notifyFinish see the loss first
            stop()

        def start_watching() -> None:
            nonlocal running
            running += 1
            host.start_soon(partial(hosted, watch, watcher=True))

        def start(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
            nonlocal running, unfinished
            running += 1
            unfinished += 1
            host.start_soon(hosted, fn, *args)

        self._start_task = start
        for fn, args in self._tasks or ():
            start(fn, *args)
        self._tasks = None
        watchers = delayed_starts(WATCH_AFTER)
        watchers.add(self, start_watching)
        try:
            with render_scope or _NO_SCOPE:
                if type(result) is bytes and not self.finished:
                    self.write(result)
                    self.finish()
                elif inspect.iscoroutine(result):
                    try:
                        value = await result
                    except UnsupportedMethod as exc:
                        value = self.site.unsupported_method_page(self, exc)
                    except ConnectionLost:
                        value = None
                    except Exception as exc:
                        failure.append(exc)
                        value = None
                    if type(value) is bytes and not self.finished and not failure:
                        self.write(value)
                        self.finish()
                while not failure and not channel.lost:
                    if self.finished and unfinished == 0:
                        break  # what is left to send, the channel sends, as after a synchronous render
                    self._wakeup = trio.Event()
                    if channel.has_output() or (self._pending and not channel.response_started):
                        await self.drain()
                        continue
                    await self._wakeup.wait()
        except ConnectionLost:
            pass
        finally:
            rendering = False
            watchers.discard(self)
            if running:
                # (cancelling costs; most quick responses have nothing to stop)
                stop()
                with trio.CancelScope(shield=True):
                    while running:
                        self._wakeup = trio.Event()
                        await self._wakeup.wait()
            self._start_task = None
        if failure and not channel.lost:
            page = self._failure(failure[0])
            if page is not None:
                self.write(page)
                self.finish()
        if not self.finished and not channel.lost and unfinished == 0 and not failure:
            log.error("%r: the response was never finished", self)

    def __repr__(self) -> str:
        return f"<Request {self.method.decode('ascii', 'replace')} {self.uri!r} {self.clientproto.decode()}>"


_NO_SCOPE = contextlib.nullcontext()


async def _resumed(render: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """The rest of ``render``, which has run up to its first wait (``waiting_on``, what it yielded)."""
    return await _Resume(render, waiting_on)


class _Resume:
    """Awaits a coroutine from where it waits: ``yield from`` one that has already yielded once."""

    __slots__ = ("_coroutine", "_waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:  # thrown in (trio sends its outcomes): pass it on
                try:
                    waiting_on = coroutine.throw(exc)
                except StopIteration as ended:
                    return ended.value
            else:
                try:
                    waiting_on = coroutine.send(sent)
                except StopIteration as ended:
                    return ended.value


def takes_method(resource: Resource, method: bytes) -> bool:
    """Whether ``resource`` may take a request with ``method``: False only when
    it dispatches with ``Resource.render`` and has no ``render_<METHOD>``, so
    that it answers 405 before a body it would refuse anyway is read."""
    if type(resource).render is not Resource.render:
        return True
    return hasattr(resource, "render_" + method.decode("ascii", "replace"))


