"""Parsing what clients send as data: query strings and form bodies.

All of it is bounded: a request carrying more fields than ``MAX_FIELDS`` is
refused with ``FormError`` (the server answers 400), so a flood of tiny
parameters cannot cost unbounded CPU or memory.

``multipart/form-data`` is parsed by python-multipart (a maintained
streaming parser; see docs/http.md, "Forms", for why not our own) behind
our limits: parts, part header size, and the request body limit the body
was read under. File parts are spooled to temporary files.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELDS = 1000


class FormError(ValueError):
    """The query string or form body is malformed or too large."""


def parse_query(query: bytes) -> dict[bytes, list[bytes]]:
    """``a=1&a=2&b=`` → ``{b"a": [b"1", b"2"], b"b": [b""]}`` (Twisted's ``args``):
    percent-escapes decoded to bytes, never to text (``%C3%A9`` is ``b"\\xc3\\xa9"``)."""
    args: dict[bytes, list[bytes]] = {}
    if not query:
        return args
    if query.count(b"&") + query.count(b";") >= MAX_FIELDS:
        raise FormError("too many query parameters")
    # Parsed as latin-1 text, which maps each byte (raw or %-escaped) to one
    # character and back: names and values come out as the bytes that were
    # sent, UTF-8 or not (parse_qsl on bytes fails on any byte past ASCII).
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        args.setdefault(name.encode("latin-1"), []).append(value.encode("latin-1"))
    return args


# A boundary is 1 to 70 characters (RFC 2046 §5.1.1).
MAX_BOUNDARY = 70
# Header fields of one part, in bytes all together (names, values, separators).
MAX_PART_HEADER_BYTES = 8 * 1024
# A file part is kept in memory up to this size, in a temporary file beyond.
SPOOL_PART = 64 * 1024
# How much of the body is handed to the parser at once.
READ_SIZE = 64 * 1024


@dataclass(eq=False)
class FileUpload:
    """A file sent in a ``multipart/form-data`` body (``request.files``).

    ``filename`` and ``content_type`` are what the client said, as bytes:
    a name to show, never a path to trust. ``file`` is positioned at its
    start; it is in memory up to ``SPOOL_PART`` bytes and in a temporary
    file beyond.
    """

    name: bytes
    filename: bytes
    content_type: bytes
    file: IO[bytes]
    size: int = 0

    def read(self) -> bytes:
        """The whole content (into memory: prefer ``file`` for large uploads)."""
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data


class _Part:
    __slots__ = ("field", "headers", "upload")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.field = bytearray()
        self.upload: FileUpload | None = None


class _MultipartReader:
    """Collects the parts python-multipart finds, within our limits."""

    def __init__(self) -> None:
        self.fields: dict[bytes, list[bytes]] = {}
        self.files: dict[bytes, list[FileUpload]] = {}
        self.parts = 0
        self.ended = False
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin, "on_header_field": self._header_field,
            "on_header_value": self._header_piece, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._part_end, "on_end": self._end,
        }

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FIELDS:
            raise FormError("too many multipart fields")
        self._part = _Part()
        self._header_bytes = 0

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise FormError("multipart part headers too large")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header_name += data[start:end]

    def _header_piece(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._count(4)
        self._part.headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        part = self._part
        disposition, params = parse_options_header(part.headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if disposition.lower() != b"form-data" or name is None:
            raise FormError("multipart part without a form-data name")
        filename = params.get(b"filename")
        if filename is not None:
            content_type = part.headers.get(b"content-type") or b"application/octet-stream"
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_PART)
            part.upload = FileUpload(name, filename, content_type, spool)
        part.headers[b""] = name  # the field's name, kept for the end of the part

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.upload is not None:
            part.upload.file.write(data[start:end])
            part.upload.size += end - start
        else:
            part.field += data[start:end]

    def _part_end(self) -> None:
        part = self._part
        name = part.headers[b""]
        if part.upload is not None:
            part.upload.file.seek(0)
            self.files.setdefault(name, []).append(part.upload)
        else:
            self.fields.setdefault(name, []).append(bytes(part.field))

    def _end(self) -> None:
        self.ended = True


def multipart_boundary(content_type: bytes) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type (parameter names
    are case-insensitive); ``FormError`` if it has none or an invalid one."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > MAX_BOUNDARY or any(c in boundary for c in b"\r\n"):
        raise FormError("multipart body without a valid boundary")
    return boundary


def parse_multipart(body: IO[bytes], content_type: bytes) -> tuple[dict[bytes, list[bytes]],
                                                                    dict[bytes, list[FileUpload]]]:
    """The parts of a ``multipart/form-data`` body read from ``body``:
    ``(fields, files)``, fields by name (their values), files by name
    (``FileUpload``). Streams: the body is read in pieces, and each file part
    goes to its own spooled temporary file. ``FormError`` for a malformed or
    unterminated body, more than ``MAX_FIELDS`` parts, or a part's headers
    over ``MAX_PART_HEADER_BYTES``."""
    reader = _MultipartReader()
    parser = MultipartParser(multipart_boundary(content_type), reader.callbacks())
    try:
        while piece := body.read(READ_SIZE):
            parser.write(piece)
        parser.finalize()
    except MultipartParseError as exc:
        raise FormError(f"malformed multipart body ({exc})") from None
    if not reader.ended:
        raise FormError("multipart body is not terminated")
    return reader.fields, reader.files
