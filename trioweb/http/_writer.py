"""The response side of HTTP/1.x: status lines, header blocks, chunk framing.

Everything here is pure and small. Header names and values reaching this
module were validated when they were set (see ``_headers``), so serializing
is a join.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from trioweb.http._status import RESPONSES


def status_phrase(code: int) -> bytes:
    return RESPONSES.get(code, b"Unknown Status")


class DateHeader:
    """The ``Date`` value, formatted at most once a second."""

    __slots__ = ("_lines", "_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""
        self._lines: dict[bytes, bytes] = {}

    def value(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._new_second(now)
        return self._value

    def _new_second(self, now: int) -> None:
        self._second = now
        self._value = formatdate(now, usegmt=True).encode("ascii")
        self._lines.clear()

    def lines(self, server: bytes) -> bytes:
        """``Server`` and ``Date`` header lines, ready to put after a status line
        (each begins with its CRLF, as ``serialize_head`` joins lines; no
        ``Server`` line when ``server`` is empty: ``--server-header none``)."""
        now = int(time.time())
        if now != self._second:
            self._new_second(now)
        lines = self._lines.get(server)
        if lines is None:
            lines = self._lines[server] = (b"\r\nServer: " + server if server else b"") + b"\r\nDate: " + self._value
        return lines

    def lines_without(self, replaced: set[bytes], server: bytes) -> bytes:
        """``lines(server)`` less the fields (lower-case names) the response sets itself."""
        own = b"" if b"server" in replaced or not server else b"\r\nServer: " + server
        return own if b"date" in replaced else own + b"\r\nDate: " + self.value()


_canonical_names: dict[bytes, bytes] = {}


def canonical_name(name: bytes) -> bytes:
    """``content-type`` → ``Content-Type``, as most servers write them (cached)."""
    canonical = _canonical_names.get(name)
    if canonical is None:
        canonical = b"-".join(part.capitalize() for part in name.split(b"-"))
        if len(_canonical_names) < 1024:
            _canonical_names[name] = canonical
    return canonical


# The fields whose lines the connection writes itself (``DateHeader.lines``),
# unless the response sets them (lower-case names, as ``Headers`` gives them).
OWN_FIELDS = (b"server", b"date")

_status_lines: dict[tuple[bytes, int, bytes], bytes] = {}


def _status_line(key: tuple[bytes, int, bytes]) -> bytes:
    """``HTTP/1.1 200 OK`` for ``(version, code, phrase)``, without its CRLF (cached:
    a server sends a few status lines over and over)."""
    line = b"HTTP/%s %d %s" % key
    if len(_status_lines) < 256:
        _status_lines[key] = line
    return line


# A header line's start, by field name: ``content-type`` → ``\r\nContent-Type: ``
# (each line begins with the CRLF that ends the one before it: one piece per
# line to join). Never holds ``OWN_FIELDS``: see serialize_head.
_line_starts: dict[bytes, bytes] = {}


def _line_start(name: bytes) -> bytes:
    start = b"\r\n" + canonical_name(name) + b": "
    if name not in OWN_FIELDS and len(_line_starts) < 1024:
        _line_starts[name] = start
    return start


def serialize_head(
    version: bytes, code: int, phrase: bytes, pairs: list[tuple[bytes, bytes]],
    dates: DateHeader | None = None, server: bytes = b"",
) -> bytes:
    """Status line, the connection's own lines (with ``dates``:
    ``dates.lines(server)``), the pairs, the empty line.

    A field of ``OWN_FIELDS`` among the pairs (set by the resource, or
    ``--add-header``) replaces the connection's own. Those names are never in
    the cache of line starts, so looking for them costs nothing on the usual
    path: only a name missing from the cache can be one.
    """
    key = (version, code, phrase)
    lines = [_status_lines.get(key) or _status_line(key), dates.lines(server) if dates is not None else b""]
    starts = _line_starts
    own_set = False
    for name, value in pairs:
        start = starts.get(name)
        if start is None:
            start = _line_start(name)
            own_set = own_set or name in OWN_FIELDS
        lines.append(start + value)
    if own_set and dates is not None:
        lines[1] = dates.lines_without({name for name, _ in pairs if name in OWN_FIELDS}, server)
    lines.append(b"\r\n\r\n")
    return b"".join(lines)


_length_texts: dict[int, bytes] = {}


def length_text(length: int) -> bytes:
    """``b"1024"`` for 1024: a Content-Length value (cached: the same sizes recur)."""
    text = _length_texts.get(length)
    if text is None:
        text = b"%d" % length
        if len(_length_texts) < 1024:
            _length_texts[length] = text
    return text


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(code: int, server: bytes, date: bytes, retry_after: int | None = None) -> bytes:
    """A complete minimal response for errors found before any resource ran
    (no ``Server`` field when ``server`` is empty)."""
    phrase = status_phrase(code)
    body = b"<html><head><title>%d %s</title></head><body><h1>%s</h1></body></html>\n" % (code, phrase, phrase)
    pairs = [(b"Server", server)] if server else []
    pairs += [
        (b"Date", date),
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
        (b"Connection", b"close"),
    ]
    if retry_after is not None:
        pairs.append((b"Retry-After", b"%d" % retry_after))
    return serialize_head(b"1.1", code, phrase, pairs) + body
