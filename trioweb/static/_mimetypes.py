"""Content types and encodings of files, by extension (``static.File.contentTypes``).

The table starts from the system's ``mime.types`` (through ``mimetypes``) and
then applies overrides, so that the types of the formats a web site serves
today do not depend on how old the host's table is.
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable, Iterable

# Where the system table is out of date or wrong for the web (fonts, modules,
# manifests), or where serving source as text is the useful choice.
_OVERRIDES = {
    ".avif": "image/avif",
    ".br": "application/octet-stream",
    ".bz2": "application/x-bzip2",
    ".conf": "text/plain",
    ".css": "text/css",
    ".csv": "text/csv",
    ".diff": "text/plain",
    ".flac": "audio/flac",
    ".gz": "application/gzip",
    ".htm": "text/html",
    ".html": "text/html",
    ".ico": "image/vnd.microsoft.icon",
    ".java": "text/plain",
    ".js": "text/javascript",
    ".json": "application/json",
    ".jsonld": "application/ld+json",
    ".log": "text/plain",
    ".md": "text/markdown",
    ".mjs": "text/javascript",
    ".mp4": "video/mp4",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".ogv": "video/ogg",
    ".opus": "audio/opus",
    ".otf": "font/otf",
    ".patch": "text/plain",
    ".pdf": "application/pdf",
    ".rst": "text/plain",
    ".svg": "image/svg+xml",
    ".toml": "text/plain",
    ".ttf": "font/ttf",
    ".txt": "text/plain",
    ".wasm": "application/wasm",
    ".webm": "video/webm",
    ".webmanifest": "application/manifest+json",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".xhtml": "application/xhtml+xml",
    ".xml": "text/xml",
    ".yaml": "text/plain",
    ".yml": "text/plain",
    ".zst": "application/zstd",
}

CONTENT_ENCODINGS = {".gz": "gzip", ".bz2": "bzip2", ".br": "br", ".zst": "zstd"}


def loadMimeTypes(
    mimetype_locations: Iterable[str] | None = None,
    init: Callable[..., None] = mimetypes.init,
) -> dict[str, str]:
    """A fresh extension → type table: the system's, the given files', then our overrides."""
    init(list(mimetype_locations) if mimetype_locations is not None else None)
    types = dict(mimetypes.types_map)
    types.update(_OVERRIDES)
    return types


def getTypeAndEncoding(
    filename: str,
    types: dict[str, str],
    encodings: dict[str, str],
    defaultType: str,
) -> tuple[str, str | None]:
    """The (type, encoding) to serve ``filename`` with.

    ``x.html.gz`` is ``text/html`` with encoding ``gzip``; a compressed file
    whose inner extension is unknown (``x.gz``) is served as what it is,
    without a Content-Encoding, so clients do not unpack it by surprise.
    Extensions are matched case-insensitively.
    """
    ext, inner = _extensions(filename)
    encoding = encodings.get(ext)
    if encoding is not None and inner in types:
        return types[inner], encoding
    return types.get(ext, defaultType), None


@functools.lru_cache(maxsize=4096)  # the same few paths are served over and over
def _extensions(filename: str) -> tuple[str, str]:
    """The lower-cased extension of ``filename``'s last part, and the one
    before it (``x.html.gz``: ``.gz``, ``.html``). Only the name is looked at:
    the tables are asked on every call, so changes to them apply at once."""
    base, ext = split_extension(filename.rpartition("/")[2])
    return ext.lower(), split_extension(base)[1].lower()


def split_extension(name: str) -> tuple[str, str]:
    """``os.path.splitext`` of a file name without a directory part, at a
    fraction of its cost (it runs for every file served): the extension
    starts at the last dot, unless only dots come before it."""
    dot = name.rfind(".")
    if dot > 0 and name[:dot].lstrip("."):
        return name[:dot], name[dot:]
    return name, ""
