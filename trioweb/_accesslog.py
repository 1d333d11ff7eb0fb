"""The access log: one line per finished response, in a format tools can read.

Formats (``AccessLog(format=...)``, the CLI's ``--access-log-format``):

- ``combined`` (the default): Apache's and nginx's combined format,
  ``127.0.0.1 - - [21/Nov/2026:19:23:26 +0000] "GET /data HTTP/1.1" 200 5 "-" "curl/8"``,
  which goaccess (``--log-format=COMBINED``) and awstats parse;
- ``common``: the same without referrer and agent;
- ``twisted``: Twisted's variant of combined, the client address in quotes
  (``"127.0.0.1" - - [...]``), for tools written against Twisted's logs;
- ``json``: one object per line (``time``, ``client``, ``method``,
  ``target``, ``protocol``, ``status``, ``bytes``, ``duration_us``,
  ``user_agent``, ``referer``, plus what the resource added to
  ``request.log_fields``, such as the front's ``user`` and ``backend``).

A text format followed by ``+duration`` (``combined+duration``) ends each
line with the request's duration in microseconds, from its head to its last
byte handed to the connection; tools that stop at the agent field ignore it.

Everything the client chose (path, referrer, agent) is escaped: control
characters, non-ASCII bytes and ``"`` can neither forge lines nor hide in a
terminal. The file is buffered; ``flush`` is called at least once a second by
whoever serves (and at every stop and reload), so logging costs no system
call per request. ``reopen`` closes and opens the path again: after
``logrotate`` has moved the file away, new lines go to a fresh one.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from trioweb.address import IPv4Address, IPv6Address

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["FORMATS", "AccessLog", "escape_for_log"]

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
FORMATS = ("combined", "common", "twisted", "json")


# The escaped text of values seen before: methods, protocols, paths and user
# agents recur, and a look-up costs a fraction of a scan (bounded: values
# up to _MAX_REMEMBERED_LENGTH bytes, _MAX_REMEMBERED of them, then forgotten at once).
_escaped: dict[bytes, str] = {}
_MAX_REMEMBERED = 1024
_MAX_REMEMBERED_LENGTH = 256


def escape_for_log(value: bytes) -> str:
    """Printable ASCII as is; ``"`` and ``\\`` backslashed; everything else ``\\xNN``."""
    text = _escaped.get(value)
    if text is not None:
        return text
    if not _UNSAFE.search(value):
        text = value.decode("ascii")
    else:
        def replace(match: re.Match[bytes]) -> bytes:
            char = match.group()
            return b"\\" + char if char in (b'"', b"\\") else b"\\x%02x" % char[0]

        text = _UNSAFE.sub(replace, value).decode("ascii")
    if len(value) <= _MAX_REMEMBERED_LENGTH:
        if len(_escaped) >= _MAX_REMEMBERED:
            _escaped.clear()
        _escaped[value] = text
    return text


# The escaped request lines (``GET /path HTTP/1.1``) seen before, by method,
# target and protocol: a request line recurs whole, and one look-up costs
# less than one per part (bounded as _escaped, by the target's length).
_request_lines: dict[tuple[bytes, bytes, bytes], str] = {}


def _request_line(method: bytes, uri: bytes, protocol: bytes) -> str:
    line = f"{escape_for_log(method)} {escape_for_log(uri)} {escape_for_log(protocol)}"
    if len(uri) <= _MAX_REMEMBERED_LENGTH:
        if len(_request_lines) >= _MAX_REMEMBERED:
            _request_lines.clear()
        _request_lines[method, uri, protocol] = line
    return line


def _timestamp(now: float) -> str:
    t = time.gmtime(now)
    return f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"


def _client_ip(request: Request) -> str:
    client = request.getClientAddress()
    return client.host if isinstance(client, (IPv4Address, IPv6Address)) else "-"


def _duration_us(request: Request) -> int:
    started = getattr(request, "started_ns", None)
    return (time.monotonic_ns() - started) // 1000 if started is not None else 0


def check_format(name: str) -> tuple[str, bool]:
    """(base format, with duration) of a format name; ``ValueError`` naming the choices."""
    base, plus, extra = name.partition("+")
    if base not in FORMATS or (plus and (extra != "duration" or base == "json")):
        choices = ", ".join(FORMATS)
        raise ValueError(f"unknown access log format {name!r} (one of {choices}; a text one may end in +duration)")
    return base, bool(plus)


class AccessLog:
    """Writes one line per response to a text file, in ``format`` (see the module docstring)."""

    def __init__(self, file: IO[str], *, owned: bool, format: str = "combined", path: str | None = None) -> None:
        self._file = file
        self._owned = owned
        self._path = path
        self._last_flush = 0.0
        self._second = -1
        self._stamp = ""
        self._iso = ""
        base, self._with_duration = check_format(format)
        self.format = format
        self._quoted = base == "twisted"
        self._agents = base != "common"
        self.line: Callable[[Request], str] = self._json if base == "json" else self._text

    @classmethod
    def open(cls, path: str, format: str = "combined") -> AccessLog:
        """``"-"`` means standard output."""
        if path == "-":
            return cls(sys.stdout, owned=False, format=format)
        return cls(_open(path), owned=True, format=format, path=path)

    def _stamp_now(self) -> str:
        """The current second in the text formats' form (and the JSON one), made once a second."""
        now = time.time()
        if int(now) != self._second:
            self._new_second(now)
        return self._stamp

    def _new_second(self, now: float) -> None:
        self._second = int(now)
        self._stamp = _timestamp(now)
        self._iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))

    def _text(self, request: Request) -> str:
        """A line of a text format: one function for the three, with as few
        calls as can be (it runs for every response: _client_ip and
        _stamp_now are written out here)."""
        client = request.getClientAddress()
        client_ip = client.host if isinstance(client, (IPv4Address, IPv6Address)) else "-"
        if self._quoted:
            client_ip = f'"{client_ip}"'
        now = time.time()
        if int(now) != self._second:
            self._new_second(now)
        method, uri, protocol = request.method, request.uri, request.clientproto
        request_line = _request_lines.get((method, uri, protocol)) or _request_line(method, uri, protocol)
        if self._agents:
            headers = request.requestHeaders
            referrer = headers.last_value(b"referer")
            agent = headers.last_value(b"user-agent")
            agents = (f' "{escape_for_log(referrer) if referrer else "-"}" '
                      f'"{(_escaped.get(agent) or escape_for_log(agent)) if agent else "-"}"')
        else:
            agents = ""
        duration = f" {_duration_us(request)}" if self._with_duration else ""
        return (f'{client_ip} - - {self._stamp} "{request_line}" {request.code} {request.sentLength or "-"}'
                f"{agents}{duration}\n")

    def _json(self, request: Request) -> str:
        headers = request.requestHeaders
        referrer = headers.last_value(b"referer")
        agent = headers.last_value(b"user-agent")
        client = _client_ip(request)
        self._stamp_now()
        record = {
            "time": self._iso,
            "client": None if client == "-" else client,
            "method": escape_for_log(request.method),
            "target": escape_for_log(request.uri),
            "protocol": escape_for_log(request.clientproto),
            "status": request.code,
            "bytes": request.sentLength,
            "duration_us": _duration_us(request),
            "user_agent": escape_for_log(agent) if agent is not None else None,
            "referer": escape_for_log(referrer) if referrer is not None else None,
        }
        extra = getattr(request, "log_fields", None)
        if extra:
            record.update(extra)
        return json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n"

    def write(self, request: Request) -> None:
        self._file.write(self.line(request))

    def flush(self) -> None:
        self._file.flush()

    def reopen(self) -> None:
        """Flush, close and open the path again (``logrotate`` moved it away);
        on failure keep writing to the file already open and raise ``OSError``."""
        if self._path is None:
            self._file.flush()
            return
        fresh = _open(self._path)
        old, self._file = self._file, fresh
        old.close()

    def close(self) -> None:
        self._file.flush()
        if self._owned:
            self._file.close()


def _open(path: str) -> IO[str]:
    return open(path, "a", encoding="ascii", buffering=65536)
