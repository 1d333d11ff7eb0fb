"""The small rules of HTTP's syntax, each written once.

Everything that reads or writes HTTP (the parser, header maps, the response
writer, a personal server's response checks, ``.asis`` files, ranges, the
request's conditional headers) takes these rules from here:

- a token (header names, methods, cookie names, transfer codings) is one or
  more of RFC 9110's ``tchar``;
- a field value we put on the wire never holds CR, LF or NUL: one of those
  would split the message;
- hop-by-hop fields belong to one connection, never relayed or taken from a
  file;
- 1xx, 204 and 304 responses never carry a body (RFC 9110 §6.4.1);
- dates are IMF-fixdate when we write them, and any of the three formats
  RFC 9110 §5.6.7 allows when we read them.
"""

from __future__ import annotations

import calendar
import re
from email.utils import formatdate, parsedate

# RFC 9110 §5.6.2: tchar, as a regex character class (to build patterns from).
TOKEN_CHARACTER = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN = re.compile(TOKEN_CHARACTER + rb"+\Z")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00\r\n]")

# Fields that describe one connection (RFC 9110 §7.6.1), plus Keep-Alive and
# Proxy-Connection, which old clients still send.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
     b"proxy-connection", b"proxy-authenticate", b"proxy-authorization"}
)


def is_token(value: bytes) -> bool:
    return _TOKEN.match(value) is not None


def has_forbidden_characters(value: bytes) -> bool:
    """``value`` holds CR, LF or NUL, and so cannot be a field value on the wire."""
    return _FORBIDDEN_IN_VALUE.search(value) is not None


def status_has_no_body(code: int) -> bool:
    return code < 200 or code == 204 or code == 304


_http_dates: dict[int, bytes] = {}


def http_date(when: int) -> bytes:
    """An HTTP date (``Sun, 06 Nov 1994 08:49:37 GMT``), remembered: Last-Modified
    values repeat (the same few files are served again and again)."""
    text = _http_dates.get(when)
    if text is None:
        if len(_http_dates) >= 4096:
            _http_dates.clear()
        text = _http_dates[when] = formatdate(when, usegmt=True).encode("ascii")
    return text


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP date, None if it is not one: a
    field out of its range (day 32, hour 25, year 10000...) makes the whole
    date invalid, and RFC 9110 says an invalid date is ignored."""
    try:
        parsed = parsedate(value.decode("latin-1"))
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    if not (1 <= year <= 9999 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
            and 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 60):
        return None
    return calendar.timegm(parsed)
