"""Byte ranges (RFC 9110 §14): parsing ``Range``, ``If-Range``, and multipart bodies.

``parse_range`` turns a ``Range`` header into the ranges to send:

- a header that does not parse (another unit, ``bytes=5-2``, ``bytes=x-``)
  is ignored: the whole file is sent with 200, as Twisted and nginx do;
- more than ``MAX_RANGES`` ranges is treated the same way, and overlapping or
  adjacent ranges are merged, so a ``Range`` header cannot make the response
  larger than the file plus bounded part headers (the "Apache Killer",
  CVE-2011-3192, asked for 1,300 overlapping ranges of one file);
- ranges that start past the end are dropped; if none is left the answer is
  416 with ``Content-Range: bytes */SIZE``.
"""

from __future__ import annotations

import re
import secrets

from trioweb.http import parse_http_date

# Apache's MaxRanges is 200; real clients (PDF readers, video players) ask for
# a handful. Beyond this the Range header is ignored and the file sent whole.
MAX_RANGES = 100

_SPEC = re.compile(rb"\s*(\d*)\s*-\s*(\d*)\s*\Z")


def parse_range(header: bytes, size: int) -> list[tuple[int, int]] | None:
    """The inclusive ``(first, last)`` byte ranges of a file of ``size`` bytes.

    None means "ignore the header and send everything" (malformed, or too many
    ranges); an empty list means nothing is satisfiable (416). The ranges
    returned are sorted and never overlap.
    """
    unit, sep, specs = header.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes":
        return None
    wanted: list[tuple[int, int]] = []
    count = 0
    for spec in specs.split(b","):
        if not spec.strip():
            continue  # RFC 9110 allows empty list elements
        count += 1
        if count > MAX_RANGES:
            return None
        match = _SPEC.match(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = int(first)
            if last:
                end = int(last)
                if end < start:
                    return None
            else:
                end = size - 1
            if start >= size:
                continue  # unsatisfiable on its own; the others may still be served
            wanted.append((start, min(end, size - 1)))
        elif last:
            suffix = int(last)
            if suffix and size:
                wanted.append((max(size - suffix, 0), size - 1))
        else:
            return None  # "bytes=-"
    if count == 0:
        return None
    return _merge(wanted)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def if_range_allows(if_range: bytes | None, etag: bytes, last_modified: int) -> bool:
    """Whether ``If-Range`` (if any) lets the Range header apply.

    An entity tag must match strongly (a weak one never does); a date must be
    exactly the file's Last-Modified.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith((b'"', b"W/")):
        return value == etag and not etag.startswith(b"W/")
    return parse_http_date(value) == last_modified


def content_range(start: int, end: int, size: int) -> bytes:
    return b"bytes %d-%d/%d" % (start, end, size)


class Multipart:
    """The framing of a ``multipart/byteranges`` body for some ranges of a file.

    ``parts`` pairs each part's header block with its ``(offset, length)``
    in the file; ``trailer`` closes the body; ``length`` is the exact body
    size, for Content-Length.
    """

    def __init__(self, ranges: list[tuple[int, int]], size: int, content_type: bytes) -> None:
        boundary = secrets.token_hex(16).encode("ascii")
        self.content_type = b"multipart/byteranges; boundary=" + boundary
        self.parts = [
            (
                b"\r\n--%s\r\nContent-Type: %s\r\nContent-Range: %s\r\n\r\n"
                % (boundary, content_type, content_range(start, end, size)),
                start,
                end - start + 1,
            )
            for start, end in ranges
        ]
        self.trailer = b"\r\n--%s--\r\n" % boundary
        self.length = sum(len(head) + length for head, _, length in self.parts) + len(self.trailer)
