"""``ASISProcessor``: files that carry their own status and headers (``.asis``).

An ``.asis`` file is a response head followed by an empty line and the body.
The head starts either with a status line (``HTTP/1.1 301 Moved
Permanently``) or directly with header lines, where an optional ``Status:
301 Moved Permanently`` header gives the status (Apache's mod_asis format);
without one the status is 200. Lines may end with CRLF or LF.

Nothing from the file reaches the wire unchecked: the status must be a
three-digit code from 200 to 599, every header name a token and every value
free of control characters, no line may be folded, and the head must end
within ``MAX_HEAD`` bytes. A file breaking any rule raises ``ValueError``,
which the Site answers with a 500 page -- never a split or smuggled
response. Framing and hop-by-hop headers in the file (``Content-Length``,
``Transfer-Encoding``, ``Connection``...) and ``Date``/``Server`` are
dropped: the server frames the body it actually sends.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from trioweb._fs import open_beneath, read_exactly, send_pieces
from trioweb.http import HOP_BY_HOP, TOKEN_CHARACTER
from trioweb.resource import NoResource, Resource

if TYPE_CHECKING:
    from trioweb._request import Request

MAX_HEAD = 64 * 1024
SMALL_BODY = 64 * 1024

_STATUS_LINE = re.compile(rb"HTTP/\d\.\d ([2-5]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\Z")
_STATUS_VALUE = re.compile(rb"([2-5]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\Z")
_HEADER = re.compile(b"(" + TOKEN_CHARACTER + rb"+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\Z")
_DROPPED = HOP_BY_HOP | {b"content-length", b"date", b"server"}


class ASISProcessor(Resource):
    """Serves an ``.asis`` file (a ``processors`` entry: ``ASISProcessor(path, registry)``)."""

    def __init__(self, path: str, registry: Any = None) -> None:
        super().__init__()
        self.path = path
        self.registry = registry

    def render_GET(self, request: Request) -> Any:
        try:
            fd, info = open_beneath(self.path, "")
        except OSError:
            return NoResource("File not found.").render(request)
        try:
            head = os.pread(fd, MAX_HEAD + 4, 0)
            code, phrase, headers, body_start = parse_asis(head, self.path)
        except BaseException:
            os.close(fd)
            raise
        request.setResponseCode(code, phrase)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        length = max(info.st_size - body_start, 0)
        request.setHeader(b"content-length", b"%d" % length)
        if request.method == b"HEAD" or length <= SMALL_BODY:
            try:
                return b"" if request.method == b"HEAD" else read_exactly(fd, body_start, length)
            finally:
                os.close(fd)
        return send_pieces(request, fd, [(b"", body_start, length)], b"")


def parse_asis(data: bytes, path: str) -> tuple[int, bytes | None, list[tuple[bytes, bytes]], int]:
    """``(code, phrase, headers, body offset)`` from the start of an .asis file."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) != -1]
    if not ends:
        raise ValueError(f"{path}: malformed .asis file: no empty line within {MAX_HEAD} bytes")
    end, sep_length = min(ends)
    if end > MAX_HEAD:
        raise ValueError(f"{path}: malformed .asis file: head longer than {MAX_HEAD} bytes")
    lines = data[:end].replace(b"\r\n", b"\n").split(b"\n") if end else []
    code, phrase = 200, None
    if lines and lines[0].startswith(b"HTTP/"):
        status = _STATUS_LINE.match(lines.pop(0))
        if status is None:
            raise ValueError(f"{path}: malformed .asis file: bad status line")
        code, phrase = int(status[1]), status[2]
    headers = []
    for line in lines:
        header = _HEADER.match(line)
        if header is None:
            raise ValueError(f"{path}: malformed .asis file: bad header line {line[:80]!r}")
        name, value = header[1].lower(), header[2]
        if name == b"status":
            status = _STATUS_VALUE.match(value)
            if status is None:
                raise ValueError(f"{path}: malformed .asis file: bad Status header")
            code, phrase = int(status[1]), status[2]
        elif name not in _DROPPED:
            headers.append((name, value))
    return code, phrase or None, headers, end + sep_length
