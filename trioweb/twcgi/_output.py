"""Reading what a CGI script prints: its header block, then its body (sans-I/O).

``OutputParser.feed`` takes the script's stdout as it arrives and returns
a ``ScriptHead`` once the header block is complete; the bytes after it
(``rest``) and everything later are the body, passed on as they are.

The rules (RFC 3875 §6, as web servers apply them):

- header lines end with LF or CRLF; the block ends with an empty line;
- a line is ``Name: value`` (space after the colon optional); the name is a
  token, the value holds no CR, LF or NUL; folded (continued) lines are
  malformed;
- ``Status: NNN reason`` sets the status (200 to 599); ``Location`` without
  a Status gives 302; ``Server`` and ``Date`` are the server's own and are
  dropped; hop-by-hop fields are dropped (they describe one connection);
  ``Content-Length`` is kept when it is a single number, and the body is held
  to it;
- the block holds at least one field, and at most ``max_size`` bytes;
- an NPH script (``nph-`` name) prints a status line (``HTTP/1.1 200 OK``)
  first; its fields are passed through without CGI's rules (no Status, no
  Location rule), except those that only the server may write.

Anything else raises ``MalformedOutput`` with a message for the error log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trioweb.http import HOP_BY_HOP, has_forbidden_characters, is_token

# The server writes these itself: a script's own would be duplicates.
SERVER_FIELDS = frozenset({b"server", b"date"})
MAX_HEAD_SIZE = 64 * 1024

_STATUS = re.compile(rb"([1-9][0-9][0-9])(?:[ \t]+(.*))?\Z")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])(?:[ \t]+(.*))?\Z")


class MalformedOutput(Exception):
    """The script's header block breaks the rules (the message says how)."""


@dataclass
class ScriptHead:
    """The response a script's header block describes."""

    code: int = 200
    reason: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_length: int | None = None


class OutputParser:
    """Finds the end of the header block in a script's stdout and reads it."""

    def __init__(self, *, nph: bool = False, max_size: int = MAX_HEAD_SIZE) -> None:
        self.nph = nph
        self.max_size = max_size
        self.rest = b""  # the body bytes that came with the end of the head
        self._buffer = bytearray()
        self._searched = 0  # the end cannot lie before here: no rescans

    def feed(self, data: bytes) -> ScriptHead | None:
        """Take more stdout; the head once complete (body bytes in ``rest``), else None."""
        buffer = self._buffer
        buffer += data
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
            raise MalformedOutput("no status line from an NPH script" if self.nph else
                                  "no header field before the body")
        start = max(self._searched - 2, 0)
        ends = [(i, len(d)) for d in (b"\n\n", b"\n\r\n") if (i := buffer.find(d, start)) != -1]
        if not ends:
            if len(buffer) > self.max_size:
                raise MalformedOutput(f"header block longer than {self.max_size} bytes")
            self._searched = len(buffer)
            return None
        end, delimiter = min(ends)
        if end + 1 > self.max_size:
            raise MalformedOutput(f"header block longer than {self.max_size} bytes")
        block = bytes(buffer[: end + 1])
        self.rest = bytes(buffer[end + delimiter:])
        buffer.clear()
        lines = [line[:-1] if line.endswith(b"\r") else line for line in block.split(b"\n")[:-1]]
        return self._nph_head(lines) if self.nph else self._cgi_head(lines)

    def unfinished(self) -> bytes:
        """What was read of an incomplete header block (for the error log)."""
        return bytes(self._buffer)

    def _cgi_head(self, lines: list[bytes]) -> ScriptHead:
        head = ScriptHead()
        status = False
        location = False
        for name, value in _fields(lines):
            if name == b"status":
                if status:
                    raise MalformedOutput("more than one Status field")
                head.code, head.reason = _status(_STATUS.match(value), value)
                status = True
                continue
            location = location or name == b"location"
            _keep(head, name, value)
        if location and not status:
            head.code = 302
        return head

    def _nph_head(self, lines: list[bytes]) -> ScriptHead:
        if not lines:
            raise MalformedOutput("no status line from an NPH script")
        head = ScriptHead()
        head.code, head.reason = _status(_STATUS_LINE.match(lines[0]), lines[0])
        for name, value in _fields(lines[1:], allow_empty=True):
            _keep(head, name, value)
        return head


def _fields(lines: list[bytes], allow_empty: bool = False) -> list[tuple[bytes, bytes]]:
    if not lines and not allow_empty:
        raise MalformedOutput("no header field before the body")
    pairs = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not is_token(name):
            raise MalformedOutput(f"malformed header line {line[:100]!r}")
        value = value.strip(b" \t")
        if has_forbidden_characters(value):
            raise MalformedOutput(f"forbidden character in the value of {name[:100]!r}")
        pairs.append((name.lower(), value))
    return pairs


def _status(match: re.Match[bytes] | None, text: bytes) -> tuple[int, bytes | None]:
    if match is None:
        raise MalformedOutput(f"malformed status {text[:100]!r}")
    code = int(match.group(1))
    if not 200 <= code <= 599:
        raise MalformedOutput(f"status {code} is not a final status (200 to 599)")
    reason = match.group(2) or None
    if reason is not None and has_forbidden_characters(reason):
        raise MalformedOutput(f"forbidden character in the reason phrase {reason[:100]!r}")
    return code, reason


def _keep(head: ScriptHead, name: bytes, value: bytes) -> None:
    if name in SERVER_FIELDS or name in HOP_BY_HOP:
        return
    if name == b"content-length":
        if head.content_length is not None or not value.isdigit() or len(value) > 18:
            raise MalformedOutput(f"invalid or repeated Content-Length {value[:40]!r}")
        head.content_length = int(value)
        return
    head.headers.append((name, value))
