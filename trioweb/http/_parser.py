"""The request side of HTTP/1.x, sans I/O: bytes in, events out.

Theory of operation
-------------------
``RequestParser`` wraps one llhttp parser (through ``httptools``) for the
whole life of a connection. ``feed(data)`` hands it bytes; the parser calls
back for each piece of a message, and we turn those callbacks into events
queued in ``events``:

- ``RequestHead``: method, target, version, headers and the framing of the
  body (``content_length``, ``chunked``), checked against every rule below;
- ``bytes``: a piece of the body (all the body bytes of one read, joined, so
  a body sent in 1-byte chunks costs one event per read, not one per chunk);
- ``END_OF_MESSAGE``: the body is complete (trailers, if any, are checked by
  llhttp, counted against the header limits, and discarded);
- ``ParseError``: the input is not an acceptable request. It is always the
  last event: the caller answers with its ``status`` and closes, because
  after a framing error nothing that follows on the connection can be
  trusted.

One ``feed`` may complete several pipelined requests; the caller decides how
much to feed, so the queue is bounded by the size of one read.

llhttp already rejects CL+TE, duplicate or signed Content-Length, bad chunk
sizes and terminators, bare CR or LF, NUL and control characters in values,
obs-fold, whitespace before a colon and invalid names. What it leaves to us,
all decided here, in one place:

- the version must be HTTP/1.0 or HTTP/1.1 (0.9 → 400, other well-formed
  versions → 505);
- an HTTP/1.1 request needs exactly one Host, and it must be a valid
  ``host[:port]``; an absolute-form target's authority replaces it;
- Transfer-Encoding: not on HTTP/1.0; otherwise exactly ``chunked`` (case and
  surrounding whitespace aside). A list ending in ``chunked`` with another
  coding is 501 (we decode no other coding); anything else is 400;
- a method token llhttp does not know is 501, a non-token is 400;
- limits: request-target length (414), header block size and field count
  (431), trailer fields included (they share the head's budget). The size of
  the head is also bounded while it is still arriving, so a header that never
  ends cannot grow without bound; so is the framing of a chunked body (chunk
  size lines, extensions, trailers): whole reads that bring no body byte
  count against the same limit, because llhttp grows a field it is still
  receiving by copying it.
- an Upgrade (or CONNECT) request is answered as an ordinary request with
  ``keep_alive`` False: we switch to no other protocol, and the bytes after
  it are not HTTP. They are kept in ``past_upgrade`` (with whatever is fed
  later) for a resource that takes the connection over (a CONNECT tunnel:
  ``HTTPConnection.take_over_stream``); the reader bounds them.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import httptools

from trioweb.http._limits import Limits
from trioweb.http._syntax import is_token

END_OF_MESSAGE = object()

# RFC 3986 host (reg-name, IPv4, or an IP literal in brackets) and an optional port.
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?\Z"
)
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://([^/?#]*)")


class ParseError(Exception):
    """The request cannot be accepted; answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: bytes  # b"1.0" or b"1.1"
    headers: dict[bytes, list[bytes]]  # lower-case names, values in arrival order
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    host: bytes | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class _Abort(Exception):
    """Raised inside a parser callback to stop llhttp; the reason is kept aside."""


class RequestParser:
    """Incremental parser for the requests on one connection."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        # The limits every head is checked against, read once (they are frozen).
        self._max_target = limits.max_request_line
        self._max_header_bytes = limits.max_header_bytes
        self._max_header_count = limits.max_header_count
        self._last_good_host: bytes | None = None  # the Host a head on this connection had, checked
        self.events: deque[object] = deque()
        self._parser = httptools.HttpRequestParser(self)
        self._error: ParseError | None = None
        self._in_head = False
        self._head_bytes_seen = 0  # over-estimate of the head received so far
        # The head being parsed (reset by on_message_begin). The target is the
        # one piece llhttp gives for most requests: kept as is, and joined in a
        # bytearray only when it comes in several.
        self._target: bytes | bytearray = b""
        self._headers: dict[bytes, list[bytes]] = {}
        self._header_count = 0
        self._header_bytes = 0
        self._headers_done = False
        self._messages_completed_in_feed = 0
        self._body_pieces: list[bytes] = []  # body bytes of the current read, joined into one event
        self._in_chunk_framing = False  # between chunks of a chunked body, or in its trailers
        self._framing_bytes_seen = 0  # like _head_bytes_seen, for the framing of a chunked body
        self._body_progress = False  # the current read brought a body byte or a message's end
        # A chunk's size line is read and none of its data yet: the trailers
        # (after the last chunk), or a read that ended right after a size line.
        self.maybe_in_trailers = False
        self.closed = False  # no more input is accepted (after an error or an upgrade)
        self.past_upgrade: bytearray | None = None  # the bytes after an Upgrade or CONNECT head

    # -- input -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse ``data``; new events are appended to ``events``."""
        if self.closed:
            if self.past_upgrade is not None:
                self.past_upgrade += data
            return
        was_in_head = self._in_head
        was_in_framing = self._in_chunk_framing
        self._messages_completed_in_feed = 0
        self._body_progress = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # An Upgrade or CONNECT request is complete; we switch to no other
            # protocol, so it is answered as an ordinary request, and says so
            # (Connection: close): the bytes after it are not HTTP.
            self.past_upgrade = bytearray(data[upgrade.args[0]:])
            if self._body_pieces:
                self._flush_body()
            for event in reversed(self.events):
                if isinstance(event, RequestHead):
                    event.keep_alive = False
                    break
            self.closed = True
            return
        except _Abort:
            pass
        except httptools.HttpParserCallbackError:
            pass
        except httptools.HttpParserInvalidMethodError:
            self._error = self._method_error(data)
        except httptools.HttpParserInvalidURLError as exc:
            self._error = ParseError(400, f"invalid request target ({exc})")
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._error = ParseError(400, str(exc))
        if self._body_pieces:
            self._flush_body()
        if self._error is not None:
            self.events.append(self._error)
            self.closed = True
            return
        if was_in_framing and self._in_chunk_framing and not self._body_progress:
            # A whole read spent in chunk framing or trailers, without one body byte.
            self._framing_bytes_seen += len(data)
            if self._framing_bytes_seen > self.limits.max_header_bytes:
                self._fail(431, "chunk framing or trailers too large")
                return
        elif self._body_progress:
            self._framing_bytes_seen = 0
        if was_in_head and self._in_head:
            # Only whole reads spent inside one head are counted: a head that
            # began inside this read is bounded by the read size already.
            self._head_bytes_seen += len(data)
            if self._head_bytes_seen > self.limits.max_header_bytes + self.limits.max_request_line:
                self._fail(431, "request head too large")

    def _fail(self, status: int, reason: str) -> None:
        self._error = ParseError(status, reason)
        self.events.append(self._error)
        self.closed = True

    def _method_error(self, data: bytes) -> ParseError:
        # llhttp knows a fixed list of methods; a well-formed token outside it
        # is a method we do not implement (501), anything else is garbage.
        # The failing request starts this read, or follows the last complete
        # head in it when several requests were pipelined into one read.
        start = data.rfind(b"\r\n\r\n") + 4 if self._messages_completed_in_feed else 0
        first = data[max(start, 0):].lstrip(b"\r\n").split(b" ", 1)[0]
        if first and len(first) < 64 and is_token(first):
            return ParseError(501, f"method {first!r} not implemented")
        return ParseError(400, "invalid method")

    # -- llhttp callbacks ------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes_seen = 0
        self._target = b""
        self._headers = {}
        self._header_count = 0
        self._header_bytes = 0
        self._headers_done = False

    def on_url(self, piece: bytes) -> None:
        target = self._target
        if not target:
            target = self._target = piece
        elif type(target) is bytes:
            target = self._target = bytearray(target) + piece
        else:
            target += piece
        if len(target) > self._max_target:
            self._abort(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._header_bytes = self._header_bytes + len(name) + len(value) + 4
        if size > self._max_header_bytes:
            self._abort(431, "header block too large")
        count = self._header_count = self._header_count + 1
        if count > self._max_header_count:
            self._abort(431, "too many header fields")
        if self._headers_done:
            return  # a trailer field: counted, and its syntax checked by llhttp; we use none
        # (one call for the usual new name: the empty list it makes for a repeated one is dropped)
        self._headers.setdefault(name.lower(), []).append(value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1":
            version_bytes = b"1.1"
        elif version == "1.0":
            version_bytes = b"1.0"
        elif version == "0.9":
            self._abort(400, "HTTP/0.9 requests are not supported")
        else:
            self._abort(505, f"HTTP version {version} not supported")
        target = self._target
        head = self._check_head(parser.get_method(), target if type(target) is bytes else bytes(target),
                                version_bytes, parser.should_keep_alive())
        self.events.append(head)
        self._in_chunk_framing = head.chunked
        self._framing_bytes_seen = 0

    def on_body(self, piece: bytes) -> None:
        self._body_pieces.append(piece)
        self._in_chunk_framing = False
        self.maybe_in_trailers = False
        self._body_progress = True

    def on_chunk_header(self) -> None:
        # The size line of a chunk is read; its data (or, after the last
        # chunk, the trailers) follows. Until a body byte comes, we count it as framing.
        self._in_chunk_framing = True
        self.maybe_in_trailers = True

    def on_chunk_complete(self) -> None:
        self._in_chunk_framing = True
        self.maybe_in_trailers = False

    def on_message_complete(self) -> None:
        if self._body_pieces:
            self._flush_body()
        self._messages_completed_in_feed += 1
        self._in_chunk_framing = False
        self.maybe_in_trailers = False
        self._body_progress = True
        self.events.append(END_OF_MESSAGE)

    def _flush_body(self) -> None:
        """Queue the body pieces of this read as one event (there must be some)."""
        pieces = self._body_pieces
        self.events.append(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        pieces.clear()

    def _abort(self, status: int, reason: str) -> None:
        self._error = ParseError(status, reason)
        raise _Abort

    # -- the checks llhttp leaves to us ------------------------------------

    def _check_head(self, method: bytes, target: bytes, version: bytes, keep_alive: bool) -> RequestHead:
        headers = self._headers
        lengths = headers.get(b"content-length")
        # llhttp allowed digits only, and one Content-Length.
        content_length = int(lengths[0]) if lengths is not None else None
        expect_continue = False
        expectations = headers.get(b"expect")
        if expectations is not None:
            for expectation in expectations:
                if expectation.strip().lower() == b"100-continue":
                    expect_continue = version == b"1.1"
                else:
                    self._abort(417, "unsupported expectation")
        chunked = False
        encodings = headers.get(b"transfer-encoding")
        if encodings is not None:
            if version == b"1.0":
                self._abort(400, "Transfer-Encoding in an HTTP/1.0 request")
            codings = [c.strip().lower() for value in encodings for c in value.split(b",")]
            if codings == [b"chunked"]:
                chunked = True
            elif all(codings) and codings[-1] == b"chunked" and all(is_token(c) for c in codings):
                self._abort(501, "transfer codings other than chunked are not supported")
            else:
                self._abort(400, "invalid Transfer-Encoding")
        hosts = headers.get(b"host")
        host = None
        if hosts is not None:
            if len(hosts) > 1:
                self._abort(400, "more than one Host header")
            host = hosts[0].strip()
            # The clients of a connection name the same host request after
            # request: checked once, then compared.
            if host != self._last_good_host:
                if not _HOST.match(host):
                    self._abort(400, "invalid Host header")
                self._last_good_host = host
        if version == b"1.1" and not host:
            self._abort(400, "HTTP/1.1 request without a Host")  # even in absolute form
        if target[:1] != b"/":  # an origin-form target (the usual) cannot be absolute-form
            absolute = _ABSOLUTE_FORM.match(target)
            if absolute:
                authority = absolute.group(1)
                if not authority or not _HOST.match(authority) or b"@" in authority:
                    self._abort(400, "invalid authority in request target")
                host = authority
        return RequestHead(method, target, version, headers, keep_alive,
                           None if chunked else content_length, chunked, expect_continue, host)
