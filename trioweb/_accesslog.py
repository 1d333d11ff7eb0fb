"""The access log, in the combined log format (one line per finished response).

Lines look like Twisted's:
``"127.0.0.1" - - [21/Nov/2026:19:23:26 +0000] "GET /data HTTP/1.1" 200 5 "-" "curl/8"``.
Everything the client chose (path, referrer, agent) is escaped: control
characters, non-ASCII bytes and ``"`` can neither forge lines nor hide in a
terminal. The file is buffered and flushed at most once a second, so logging
costs no system call per request.
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO, TYPE_CHECKING

from trioweb.address import IPv4Address, IPv6Address

if TYPE_CHECKING:
    from trioweb._request import Request

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def escape_for_log(value: bytes) -> str:
    """Printable ASCII as is; ``"`` and ``\\`` backslashed; everything else ``\\xNN``."""
    if not _UNSAFE.search(value):
        return value.decode("ascii")

    def replace(match: re.Match[bytes]) -> bytes:
        char = match.group()
        return b"\\" + char if char in (b'"', b"\\") else b"\\x%02x" % char[0]

    return _UNSAFE.sub(replace, value).decode("ascii")


def _timestamp(now: float) -> str:
    t = time.gmtime(now)
    return f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"


class AccessLog:
    """Writes one combined-format line per response to a text file."""

    def __init__(self, file: IO[str], *, owned: bool) -> None:
        self._file = file
        self._owned = owned
        self._last_flush = 0.0
        self._second = -1
        self._stamp = ""

    @classmethod
    def open(cls, path: str) -> AccessLog:
        """``"-"`` means standard output."""
        if path == "-":
            return cls(sys.stdout, owned=False)
        return cls(open(path, "a", encoding="ascii", buffering=65536), owned=True)

    def line(self, request: Request) -> str:
        client = request.getClientAddress()
        ip = client.host if isinstance(client, (IPv4Address, IPv6Address)) else "-"
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._stamp = _timestamp(now)
        headers = request.requestHeaders
        referrer = headers.last_value(b"referer")
        agent = headers.last_value(b"user-agent")
        # The request line is escaped as one piece: spaces are printable, so
        # this is the same as escaping its three parts, with one scan.
        first_line = escape_for_log(b"%s %s %s" % (request.method, request.uri, request.clientproto))
        return (
            f'"{ip}" - - {self._stamp} "{first_line}" {request.code} {request.sentLength or "-"} '
            f'"{escape_for_log(referrer) if referrer else "-"}" "{escape_for_log(agent) if agent else "-"}"\n'
        )

    def write(self, request: Request) -> None:
        self._file.write(self.line(request))
        now = time.monotonic()
        if now - self._last_flush >= 1.0:
            self._last_flush = now
            self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        if self._owned:
            self._file.close()
