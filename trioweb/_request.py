"""``Request``: one HTTP request as resources see it, with Twisted's names.

A Request is created by ``Site.handle`` for each request head. Resources read
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
"""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate
from io import BytesIO
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

import trio

from trioweb._forms import parse_cookies, parse_multipart, parse_query
from trioweb.address import Address, IPv4Address, IPv6Address
from trioweb.http import Channel, ConnectionLost, Headers, RequestHead, status_phrase
from trioweb.http._headers import checked_value
from trioweb.http._writer import http_date
from trioweb.urlpath import URLPath

if TYPE_CHECKING:
    from trioweb.server import Site

CACHED = object()  # what setLastModified/setETag return when the client's copy is current

_SAMESITE = {"lax": b"Lax", "strict": b"Strict", "none": b"None"}


def _parse_http_date(value: bytes) -> float | None:
    try:
        parsed = parsedate(value.decode("latin-1"))
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return calendar.timegm(parsed)


class Request:
    """An HTTP request and the response being made for it."""

    defaultContentType: bytes | None = b"text/html"

    # Defaults every request starts with, kept on the class so that a request
    # stores only what differs (a measurable share of a small response's cost).
    code = 200
    code_message: bytes | None = None
    sentLength = 0
    finished = False
    session: Any = None
    _args: dict[bytes, list[bytes]] | None = None
    _received_cookies: dict[bytes, bytes] | None = None
    _deferred = False  # the response outlives render: writes wake the flusher
    _wakeup: trio.Event | None = None
    _done: trio.Event | None = None  # created when someone waits for a change
    _nursery: trio.Nursery | None = None
    _send_lock: trio.Lock | None = None
    _drains = 0
    _body_limit: int | None = None  # set by the Site once the resource is known

    def __init__(self, site: Site, channel: Channel, head: RequestHead) -> None:
        self.site = site
        self.channel = channel
        self.method = head.method
        self.uri = head.target
        self.clientproto = b"HTTP/" + head.version
        self.requestHeaders = Headers.from_trusted_map(head.headers)
        self.responseHeaders = Headers()
        self.client: Address = channel.client
        self.host: Address = channel.host
        self._host_header = head.host
        self.cookies: list[bytes] = []
        self.content: IO[bytes] = BytesIO()
        self.sitepath: list[bytes] = []
        self._pending: list[bytes] = []  # body written before the head is framed
        self._tasks: list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]] = []
        target = head.target
        if target[:1] != b"/" and target != b"*":
            target = _origin_form(target)
        path, _, self._query = target.partition(b"?")
        self.path = path
        self.prepath: list[bytes] = []
        segments = path[1:].split(b"/")
        self.postpath: list[bytes] = [unquote_to_bytes(s) for s in segments] if b"%" in path else segments

    # -- what the client sent ---------------------------------------------------

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        """Query parameters, plus the fields of a form body on POST."""
        if self._args is None:
            args = parse_query(self._query)
            if self.method == b"POST":
                ctype = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
                kind = ctype.split(b";", 1)[0].strip().lower()
                if kind == b"application/x-www-form-urlencoded":
                    for name, values in parse_query(self._body_bytes()).items():
                        args.setdefault(name, []).extend(values)
                elif kind == b"multipart/form-data":
                    for name, values in parse_multipart(self._body_bytes(), ctype).items():
                        args.setdefault(name, []).extend(values)
            self._args = args
        return self._args

    @args.setter
    def args(self, value: dict[bytes, list[bytes]]) -> None:
        self._args = value

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
        return self.channel.is_secure

    def getRequestHostname(self) -> bytes:
        """The host the client asked for, without port; our own address if it named none."""
        host = self._host_header
        if host:
            if host.startswith(b"["):
                return host[: host.find(b"]") + 1]
            return host.rsplit(b":", 1)[0] if b":" in host else host
        address = self.host
        if isinstance(address, (IPv4Address, IPv6Address)):
            return address.host.encode("ascii")
        return b"localhost"

    def _host_with_port(self) -> bytes:
        """The authority for URLs: the client's Host as it gave it (so a URL
        works from where the client is, even behind port forwarding); our own
        address and port when it gave none."""
        host = self.getRequestHostname()
        default = 443 if self.isSecure() else 80
        if self._host_header:
            authority = self._host_header.rsplit(b"]", 1)[-1]
            port = int(authority.rsplit(b":", 1)[1] or default) if b":" in authority else default
        else:
            address = self.host
            port = address.port if isinstance(address, (IPv4Address, IPv6Address)) else default
        if port == default:
            return host
        return b"%s:%d" % (host, port)

    def prePathURL(self) -> bytes:
        scheme = b"https" if self.isSecure() else b"http"
        path = b"/".join(quote(seg, safe="").encode("ascii") for seg in self.prepath)
        return b"%s://%s/%s" % (scheme, self._host_with_port(), path)

    def URLPath(self) -> URLPath:
        return URLPath.fromBytes(self.prePathURL())

    def childLink(self, name: bytes) -> bytes:
        base = self.prepath[-1] if self.prepath and self.prepath[-1] else b"."
        if self.postpath:
            return name
        return base + b"/" + name if base != b"." else name

    async def body_stream(self) -> AsyncIterator[bytes]:
        """The request body in pieces, for resources with ``stream_request_body``.

        Bounded by the resource's ``max_request_body`` (or the Site's); see
        ``Site.handle`` for how an oversized or stalled body is answered.
        """
        limit = self.site.body_limit_for(self)
        while True:
            piece = await self.channel.receive_body_chunk(limit)
            if not piece:
                return
            yield piece

    # -- the response -------------------------------------------------------------

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

        def part(value: bytes | str | int) -> bytes:
            raw = str(value).encode("utf-8") if isinstance(value, (str, int)) else value
            if any(c in raw for c in b";\r\n\x00"):
                raise ValueError(f"cookie part contains a forbidden character: {raw!r}")
            return raw

        fields = [part(k) + b"=" + part(v)]
        for label, value in ((b"Expires", expires), (b"Domain", domain), (b"Path", path),
                             (b"Max-Age", max_age), (b"Comment", comment)):
            if value is not None:
                fields.append(label + b"=" + part(value))
        if secure:
            fields.append(b"Secure")
        if httpOnly:
            fields.append(b"HttpOnly")
        if sameSite is not None:
            same = _SAMESITE.get(sameSite.lower())
            if same is None:
                raise ValueError("sameSite must be 'lax', 'strict' or 'none'")
            if same == b"None" and not secure:
                raise ValueError("sameSite='none' requires secure=True")
            fields.append(b"SameSite=" + same)
        self.cookies.append(b"; ".join(fields))

    def setLastModified(self, when: float) -> object | None:
        """Set Last-Modified; CACHED (and 304) when the client's copy is as new."""
        when = int(when)
        self.responseHeaders.set_checked(b"last-modified", http_date(when))
        received = self.requestHeaders
        since = received.last_value(b"if-modified-since")
        if since and self.method in (b"GET", b"HEAD") and not received.last_value(b"if-none-match"):
            since_time = _parse_http_date(since.split(b";", 1)[0])
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
            self._start_response(content_length=sum(len(p) for p in self._pending))
        channel.end_response()
        self.site.log(self)
        if self._wakeup is not None:
            self._wakeup.set()

    def _start_response(self, content_length: int | None) -> None:
        """Frame the head (and the body queued so far) into the connection's buffer."""
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
            and self.code not in (204, 304)
            and (content_length != 0 or self.method == b"HEAD")
        ):
            pairs.append((b"content-type", self.defaultContentType))
        pairs.extend((b"set-cookie", c) for c in self.cookies)
        phrase = self.code_message or status_phrase(self.code)
        self.channel.start_response(self.code, phrase, pairs, content_length)
        for piece in self._pending:
            self.channel.write(piece)
        self._pending.clear()

    def notifyFinish(self) -> Awaitable[None]:
        """Awaitable that completes when the response is done.

        It raises ``ConnectionLost`` if the client went away first.
        """
        return self._wait_finished()

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
        """Run ``fn(*args)`` in this request's nursery.

        The nursery lives until the response is finished and every task started
        in it has returned; it is cancelled when the client goes away. An
        exception in a task ends the request (500 if nothing was sent yet,
        otherwise the connection is aborted).
        """
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)
        else:
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
        if self.finished:
            raise RuntimeError("Request.sendfile called after Request.finish")
        if not self.channel.response_started:
            self._start_response(content_length=None)
        self.sentLength += count
        async with self._sending():
            await self.channel.send_file(fd, offset, count)

    async def sendpipe(self, fd: int, count: int, on_sent: Callable[[int], None]) -> None:
        """Send the next ``count`` bytes waiting in the pipe ``fd`` as body, with backpressure.

        For bodies relayed without a copy (``rpc.PipePiece``): spliced to the
        client's socket when it is a plain one and the body is not chunked
        (set Content-Length beforehand), else read and sent as bytes.
        ``on_sent`` is called with each amount taken from the pipe.
        """
        if self.finished:
            raise RuntimeError("Request.sendpipe called after Request.finish")
        if not self.channel.response_started:
            self._start_response(content_length=None)
        self.sentLength += count
        async with self._sending():
            await self.channel.send_pipe(fd, count, on_sent)

    def _sending(self) -> trio.Lock:
        """The lock that keeps one send at a time on the channel (made on first use)."""
        if self._send_lock is None:
            self._send_lock = trio.Lock()
        return self._send_lock

    def __repr__(self) -> str:
        return f"<Request {self.method.decode('ascii', 'replace')} {self.uri!r} {self.clientproto.decode()}>"


def _origin_form(target: bytes) -> bytes:
    """The path and query of an absolute-form target (``http://host/p?q`` → ``/p?q``)."""
    if b"://" in target:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        query = rest.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            return b"/" + (rest[query:] if query != -1 else b"")
        return rest[slash:]
    return b"/"  # authority-form (CONNECT): no path

