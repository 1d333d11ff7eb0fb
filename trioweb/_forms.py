"""Parsing what clients send as data: query strings and form bodies.

All of it is bounded: a request carrying more fields than ``MAX_FIELDS`` is
refused with ``FormError`` (the server answers 400), so a flood of tiny
parameters cannot cost unbounded CPU or memory.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

MAX_FIELDS = 1000


class FormError(ValueError):
    """The query string or form body is malformed or too large."""


def parse_query(query: bytes) -> dict[bytes, list[bytes]]:
    """``a=1&a=2&b=`` → ``{b"a": [b"1", b"2"], b"b": [b""]}`` (Twisted's ``args``)."""
    args: dict[bytes, list[bytes]] = {}
    if not query:
        return args
    if query.count(b"&") + query.count(b";") >= MAX_FIELDS:
        raise FormError("too many query parameters")
    for name, value in parse_qsl(query, keep_blank_values=True):
        args.setdefault(name, []).append(value)
    return args


_BOUNDARY = re.compile(rb'boundary="?([^";]{1,200})"?')
_DISPOSITION_NAME = re.compile(rb'\bname="((?:[^"\\]|\\.)*)"|\bname=([^;\s]+)', re.IGNORECASE)


def parse_multipart(body: bytes, content_type: bytes) -> dict[bytes, list[bytes]]:
    """The fields of a ``multipart/form-data`` body, by name (file parts give their content)."""
    match = _BOUNDARY.search(content_type)
    if not match:
        raise FormError("multipart body without a boundary")
    delimiter = b"--" + match.group(1)
    parts = body.split(delimiter)
    if len(parts) < 3 or not parts[-1].startswith(b"--"):
        raise FormError("multipart body is not terminated")
    if len(parts) - 2 > MAX_FIELDS:
        raise FormError("too many multipart fields")
    args: dict[bytes, list[bytes]] = {}
    for part in parts[1:-1]:
        if not part.startswith(b"\r\n") or not part.endswith(b"\r\n"):
            raise FormError("malformed multipart part")
        head, sep, content = part[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise FormError("multipart part without a header block")
        name = None
        for line in head.split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-disposition":
                found = _DISPOSITION_NAME.search(value)
                if found:
                    name = found.group(1) if found.group(1) is not None else found.group(2)
        if name is None:
            raise FormError("multipart part without a field name")
        args.setdefault(name, []).append(content)
    return args
