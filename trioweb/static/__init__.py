"""Static content: ``Data`` (bytes in memory) and ``File`` (a file or a directory tree).

``File(path)`` serves what is on disk below ``path``, with the attributes
Twisted Web users know: ``indexNames``, ``processors``, ``ignoreExt``,
``contentTypes``, ``contentEncodings``, ``childNotFound``, ``forbidden``, and
``putChild`` children that take precedence over the filesystem.

How a request is answered:

- Traversal (``getChild``) only builds paths from segments that are plain
  names (see ``trioweb._fs``): ``..``, ``.``, a decoded ``/`` or NUL, or
  invalid UTF-8 give ``childNotFound`` (404). An empty segment (a trailing
  slash) gives the first existing index name, or a ``DirectoryLister``.
- Rendering opens the file once, below the root of the ``File`` tree: a
  symlink resolving outside it is 404 unless ``follow_symlinks`` is set;
  FIFOs, sockets and devices are 404 and never opened for reading; a
  permission error is ``forbidden`` (403); a missing file is 404.
- A directory requested without its trailing slash is redirected (302) to
  the absolute URL with the slash, query kept.
- ``Last-Modified`` and a strong ``ETag`` are always sent; a matching
  ``If-None-Match``/``If-Modified-Since`` gives 304 without reading the file.
- ``Range`` is honoured as described in ``trioweb.static._ranges`` (206, multipart,
  416), subject to ``If-Range``; ``Accept-Ranges: bytes`` is always sent.
- With ``Accept-Encoding``, a precompressed sibling (``app.js.br``,
  ``app.js.gz``) is served instead when one exists, under the same
  containment rules, with ``Content-Encoding``. Whenever a sibling exists,
  every answer for the file (the uncompressed one and 304s too) says
  ``Vary: Accept-Encoding``, so that a cache never hands one client's
  variant to another.
- HEAD gets GET's headers; the file is never read. Small bodies are read at
  once; larger ones are sent with ``os.sendfile`` (or read in a worker
  thread when the transport is TLS) with backpressure, in bounded memory.
- A small file served whole leaves a copy in memory (``trioweb.static._filecache``):
  later requests for it cost one ``stat``, which must show the same file
  unchanged, instead of an open, a read and a close. The copy carries its
  ``ETag`` and ``Last-Modified`` text, made once from that identity. A plain
  GET of it (no condition, no ``Range``, no content coding) is answered with
  those and the copy's bytes directly; any other request takes the full path.

What traversal keeps: a ``File`` remembers the child ``File`` it made for a
plain segment, and the next request for that segment reuses it instead of
copying the parent's settings again. The children are kept in one table per
tree (``_resolved``, shared by the Files of one root, keyed by parent and
segment): at most ``RESOLVED_CHILDREN`` in all, then all forgotten at once,
so requests for made-up paths, however deep, cannot make it grow. It holds
no answer about the disk: a child ``File`` is only a path and settings, and
whether that path is a file, a directory, missing, forbidden or a symlink
out of the tree is found when it renders, as before; so no mtime is needed
to keep it valid. Only children that would be made the same way on every
request are kept: not while ``ignoredExts`` is set (it looks at the disk
while traversing), not a name whose extension has a processor (the
processor checks the file first), not index names, not for a subclass with
its own ``createSimilarFile``. The extension of a kept child is kept with it
and looked up in ``processors`` again on every request, so a processor added
later, even into the dict in place, takes over at once. Setting any
attribute of a ``File`` forgets the kept children of its tree, so settings
changed later (``indexNames``, ``defaultType``...) apply to the next
request, as with a fresh child. What differs from a fresh child per
request: a kept child is shared by the requests for that segment, so a
``putChild`` on a child found by ``getChild`` (rather than on the ``File``
the tree was built with) lasts, and a class attribute of ``File`` changed
while serving reaches kept children only once their parent's are forgotten.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from trioweb._fs import RECHECK_ROOT, NotServable, Registry, ServedRoot, read_exactly, segment_name, send_pieces
from trioweb._request import CACHED
from trioweb.http import checked_value, http_date
from trioweb.resource import ForbiddenResource, NoResource, Resource
from trioweb.static._asis import ASISProcessor
from trioweb.static._filecache import etag, keep_copy, kept_copy
from trioweb.static._listing import DirectoryLister, formatFileSize
from trioweb.static._mimetypes import CONTENT_ENCODINGS, getTypeAndEncoding, loadMimeTypes, split_extension
from trioweb.static._ranges import Multipart, content_range, if_range_allows, parse_range
from trioweb.util import redirect_to_slash

if TYPE_CHECKING:
    from collections.abc import Callable

    from trioweb._request import Request

__all__ = [
    "SCRIPT_EXTENSIONS",
    "ASISProcessor",
    "Data",
    "DirectoryLister",
    "File",
    "PublicFile",
    "Registry",
    "formatFileSize",
    "getTypeAndEncoding",
    "loadMimeTypes",
]

# Bodies up to this size are read in one call and answered from ``render``;
# beyond it they are streamed (sendfile) from a task.
SMALL_BODY = 64 * 1024

# What is known of the precompressed variants of this many files at most.
MAX_VARIANTS_SEEN = 4096
# (root, relative path) → (good until, the precompressed list asked about, the variants found)
_variants_seen: dict[tuple[str, str], tuple[float, object, list[tuple[bytes, str]]]] = {}
# How many traversed children a File keeps (see the module docstring).
RESOLVED_CHILDREN = 4096  # per tree

# Never run by the front, never shown as source either.
SCRIPT_EXTENSIONS = frozenset({".rpy", ".epy", ".cgi", ".asis", ".py", ".pyc", ".php", ".pl", ".sh", ".fcgi", ".wsgi"})
# Request fields that make a GET of a kept copy take the full path (_prepare):
# what they ask for needs comparing or selecting. Present with no value, they
# change nothing there, so taking the full path for them is only slower.
_SELECTING_FIELDS = (b"range", b"if-none-match", b"if-modified-since")
# Errors meaning "there is nothing servable here" (404), as opposed to 403 or 500
# (ENXIO, ENODEV: a socket or a device node without a driver was opened).
_NOT_FOUND_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EINVAL, errno.ENXIO,
                     errno.ENODEV}


class Data(Resource):
    """Serves fixed bytes with a fixed content type, for GET and HEAD."""

    isLeaf = True

    def __init__(self, data: bytes, type: str | bytes) -> None:
        super().__init__()
        self.data = data
        self.type = type.encode("ascii") if isinstance(type, str) else type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.type)
        return self.data


class File(Resource):
    """A file or a directory tree on disk; see the module docstring."""

    contentTypes: dict[str, str] = loadMimeTypes()
    contentEncodings: dict[str, str] = dict(CONTENT_ENCODINGS)
    # Content codings a precompressed sibling may provide, in order of preference.
    precompressed: tuple[tuple[bytes, str], ...] = ((b"br", ".br"), (b"gzip", ".gz"))
    indexNames: list[str] = ["index", "index.html", "index.htm", "index.rpy"]
    childNotFound: Resource = NoResource("File not found.")
    forbidden: Resource = ForbiddenResource()
    follow_symlinks = False
    # Seconds between checks that the root's path still names the directory
    # being served (a symlink re-pointed by a deployment is followed within that).
    root_recheck = RECHECK_ROOT
    # Seconds for which what is on disk of a file's precompressed variants is
    # trusted (see _variants_on_disk): a variant that appears is served within that.
    variants_recheck = 1.0
    # Children made by getChild, by (parent, segment), one table per tree (see the module docstring).
    _resolved: dict[tuple[File, bytes], tuple[Resource, str]] | None = None

    def __init__(
        self,
        path: str | bytes | os.PathLike[str],
        defaultType: str = "text/html",
        ignoredExts: tuple[str, ...] | list[str] = (),
        registry: Registry | None = None,
    ) -> None:
        super().__init__()
        self.path = os.path.abspath(os.fsdecode(path))
        self.defaultType = defaultType
        self.ignoredExts = list(ignoredExts)
        self.registry = registry if registry is not None else Registry()
        self.processors: dict[str, Callable[[str, Registry], Resource]] = {}
        # The tree this File belongs to (what containment is checked against),
        # and where this File is in it.
        self._served = ServedRoot(self.path, self.root_recheck)
        self._relative = ""
        self._resolved = {}

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if self._resolved:
            self._resolved.clear()  # a setting changed: children are made afresh

    def ignoreExt(self, ext: str) -> None:
        """Let a request for ``foo`` find ``foo<ext>``; ``"*"`` allows any extension."""
        self.ignoredExts.append(ext)

    # -- traversal -----------------------------------------------------------------

    def getChild(self, path: bytes, request: Request) -> Resource:
        resolved = self._resolved
        if resolved:
            kept = resolved.get((self, path))
            if kept is not None and not self.ignoredExts:
                child, extension = kept
                # Asked again each time, as a fresh child would: a processor may have been added since.
                if not self.processors or extension not in self.processors:
                    return child
        name = segment_name(path)
        if name is None:
            return self.childNotFound
        if name == "":
            return self._index()
        if self.ignoredExts:
            if not os.path.lexists(os.path.join(self.path, name)):
                found = self._sibling_with_extension(name)
                if found is None:
                    return self.childNotFound
                name = found
            return self._child(name)
        extension = split_extension(name)[1]
        if self.processors and extension in self.processors:
            return self._child(name)
        child = self.createSimilarFile(self._child_path(name))
        if type(self).createSimilarFile is File.createSimilarFile:
            self._keep_child(path, child, extension)
        return child

    def _keep_child(self, segment: bytes, child: Resource, extension: str) -> None:
        resolved = self._resolved
        if resolved is not None:
            if len(resolved) >= RESOLVED_CHILDREN:
                resolved.clear()
            resolved[self, segment] = child, extension

    def _child_path(self, name: str) -> str:
        return self.path + "/" + name if self.path != "/" else "/" + name  # os.path.join, for a plain name

    def _child(self, name: str) -> Resource:
        path = self._child_path(name)
        processor = self.processors.get(split_extension(name)[1]) if self.processors else None
        if processor is None:
            return self.createSimilarFile(path)
        # A processor interprets the file: check it is one we would serve first.
        try:
            fd, info = self._open(os.path.join(self._relative, name))
        except OSError as exc:
            return self._error_resource(exc)
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            return self.createSimilarFile(path)
        return processor(path, self.registry)

    def _index(self) -> Resource:
        for index in self.indexNames:
            if os.path.exists(os.path.join(self.path, index)):
                return self._child(index)
        return self.directoryListing()

    def _sibling_with_extension(self, name: str) -> str | None:
        for ext in self.ignoredExts:
            if ext == "*":
                try:
                    names = sorted(os.listdir(self.path))
                except OSError:
                    return None
                for candidate in names:
                    if candidate.startswith(name + "."):
                        return candidate
            elif os.path.lexists(os.path.join(self.path, name + ext)):
                return name + ext
        return None

    def createSimilarFile(self, path: str) -> File:
        """A File for ``path`` with this one's settings (same tree if ``path`` is below it).

        The settings are copied attribute by attribute rather than through
        ``__init__``: this runs for every path segment of every request.
        """
        f = self.__class__.__new__(self.__class__)
        # Set in __dict__, not through __setattr__, which would empty the
        # tree's table of kept children (shared with f by this update).
        settings = f.__dict__
        settings.update(self.__dict__)
        settings["children"] = {}
        settings["indexNames"] = self.indexNames[:]
        f_path = settings["path"] = path if _is_normal(path) else os.path.normpath(path)
        root = self._served.path
        if f_path.startswith(root + "/") or (root == "/" and f_path != "/"):
            settings["_relative"] = f_path[len(root):].lstrip("/")
        else:
            settings["_served"] = ServedRoot(f_path, self.root_recheck)
            settings["_relative"] = ""
            settings["_resolved"] = {}  # another tree
        return f

    def directoryListing(self) -> DirectoryLister:
        return DirectoryLister(self.path, None, self.contentTypes, self.contentEncodings, self.defaultType,
                               root=self._served.path, follow_symlinks=self.follow_symlinks)

    # -- rendering ---------------------------------------------------------------------

    def _open(self, relative: str) -> tuple[int, os.stat_result]:
        return self._served.open(relative, follow_symlinks=self.follow_symlinks)

    def _error_resource(self, exc: OSError) -> Resource:
        if isinstance(exc, PermissionError):
            return self.forbidden
        if isinstance(exc, NotServable) or exc.errno in _NOT_FOUND_ERRNOS:
            return self.childNotFound
        raise exc  # EMFILE, EIO...: a server problem, answered with 500

    def render_GET(self, request: Request) -> Any:
        ctype, encoding = getTypeAndEncoding(self.path, self.contentTypes, self.contentEncodings, self.defaultType)
        variants = self._variants_on_disk() if encoding is None else []
        if variants:
            request.setHeader(b"vary", b"Accept-Encoding")  # whichever is sent: the choice depends on it
            variants = self._acceptable_variants(request, variants)
        if not variants:
            kept = kept_copy(self._served, self._relative, self.follow_symlinks)
            if kept is not None:
                if (encoding is None and request.method == b"GET"
                        and not request.requestHeaders.has_any(_SELECTING_FIELDS)):
                    # The common case, answered without _prepare: the whole copy, and the
                    # headers _prepare would set when there is nothing to compare or select.
                    headers = request.responseHeaders
                    headers.set_checked(b"accept-ranges", b"bytes")
                    headers.set_checked(b"last-modified", kept.last_modified)
                    headers.set_checked(b"etag", kept.etag)
                    headers.set_checked(b"content-type", checked_value(ctype))
                    return kept.content
                body = self._prepare(request, kept.size, kept.mtime, kept.etag, kept.last_modified, ctype, encoding)
                if body is None or request.method == b"HEAD":
                    return b""
                content = kept.content
                return _assemble(body[0], body[1], lambda offset, count: content[offset:offset + count])
        try:
            fd, info = self._open(self._relative)
        except OSError as exc:
            return self._error_resource(exc).render(request)
        streaming = False
        try:
            if stat.S_ISDIR(info.st_mode):
                return redirect_to_slash(request)
            swapped = False
            if variants:
                fd, info, encoding = self._precompressed(request, fd, info, variants)
                swapped = encoding is not None
            mtime = int(info.st_mtime)
            body = self._prepare(request, info.st_size, mtime, etag(info), http_date(mtime), ctype, encoding)
            if body is None or request.method == b"HEAD":
                return b""
            pieces, trailer, length = body
            if length <= SMALL_BODY:
                content = _assemble(pieces, trailer, functools.partial(read_exactly, fd))
                if pieces == [(b"", 0, info.st_size)] and not swapped:
                    keep_copy(self._served, self._relative, self.follow_symlinks, fd, info, content)
                return content
            streaming = True
            return send_pieces(request, fd, pieces, trailer)
        finally:
            if not streaming:
                os.close(fd)

    def _variants_on_disk(self) -> list[tuple[bytes, str]]:
        """The ``(coding, suffix)`` of ``precompressed`` that have something on disk beside the file.

        Asked for every request (the answer decides ``Vary``), so it is
        remembered for ``variants_recheck`` seconds: a variant added or
        removed is noticed within that, and a file without variants does not
        cost an ``lstat`` per suffix per request.
        """
        if not self.precompressed:
            return []
        key = (self._served.path, self._relative)
        now = time.monotonic()
        known = _variants_seen.get(key)
        if known is not None and now < known[0] and known[1] is self.precompressed:
            return known[2]
        found = [(coding, suffix) for coding, suffix in self.precompressed
                 if not self._served.absent(self._relative + suffix)]
        if len(_variants_seen) >= MAX_VARIANTS_SEEN:
            _variants_seen.clear()
        _variants_seen[key] = (now + self.variants_recheck, self.precompressed, found)
        return found

    def _acceptable_variants(self, request: Request, variants: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
        """Those of ``variants`` the client accepts, in our order of preference."""
        header = request.getHeader(b"accept-encoding")
        if not header:
            return []
        accepted = _accepted_codings(header)
        return [(coding, suffix) for coding, suffix in variants if coding in accepted]

    def _precompressed(
        self, request: Request, fd: int, info: os.stat_result, variants: list[tuple[bytes, str]]
    ) -> tuple[int, os.stat_result, str | None]:
        """Swap in the first of ``variants`` that exists as a file, if any."""
        for coding, suffix in variants:
            try:
                variant_fd, variant_info = self._open(self._relative + suffix)
            except OSError:
                continue
            if not stat.S_ISREG(variant_info.st_mode):
                os.close(variant_fd)
                continue
            os.close(fd)
            return variant_fd, variant_info, coding.decode("ascii")
        return fd, info, None

    def _prepare(
        self, request: Request, size: int, mtime: int, etag: bytes, last_modified: bytes, ctype: str,
        encoding: str | None,
    ) -> tuple[list[tuple[bytes, int, int]], bytes, int] | None:
        """Set status and headers for a file of ``size`` bytes last modified at
        ``mtime`` (``last_modified`` as an HTTP date), tagged ``etag``; return
        what to send of it.

        None means no body (304, 416); otherwise ``(pieces, trailer, length)``:
        ``(part header, offset, count)`` pieces of the file, bytes to end with,
        and the body length (set as Content-Length for a streamed body or HEAD).
        """
        headers = request.responseHeaders
        received = request.requestHeaders
        headers.set_checked(b"accept-ranges", b"bytes")
        if received.last_value(b"if-none-match") is None and received.last_value(b"if-modified-since") is None:
            # What setLastModified and setETag do when there is nothing to compare
            # with, without formatting the validators again.
            headers.set_checked(b"last-modified", last_modified)
            headers.set_checked(b"etag", etag)
        else:
            modified = request.setLastModified(mtime)
            if request.setETag(etag) is CACHED or modified is CACHED:
                return None
        headers.set_value(b"content-type", ctype)
        if encoding is not None:
            headers.set_value(b"content-encoding", encoding)
        range_header = received.last_value(b"range")
        if range_header is None:
            pieces, trailer, length = [(b"", 0, size)], b"", size
        else:
            selected = self._select_ranges(request, range_header, etag, size, mtime, ctype)
            if selected is None:
                return None
            pieces, trailer, length = selected
        if length > SMALL_BODY or request.method == b"HEAD":
            headers.set_checked(b"content-length", b"%d" % length)  # a smaller body is measured when returned
        return pieces, trailer, length

    def _select_ranges(
        self, request: Request, range_header: bytes, etag: bytes, size: int, mtime: int, ctype: str
    ) -> tuple[list[tuple[bytes, int, int]], bytes, int] | None:
        """What a ``Range`` request gets, as ``_prepare`` returns it (None: 416)."""
        if not if_range_allows(request.getHeader(b"if-range"), etag, mtime):
            return [(b"", 0, size)], b"", size
        ranges = parse_range(range_header, size)
        if ranges is None:
            return [(b"", 0, size)], b"", size
        if not ranges:
            request.setResponseCode(416)
            request.setHeader(b"content-range", b"bytes */%d" % size)
            request.responseHeaders.removeHeader(b"content-type")
            request.responseHeaders.removeHeader(b"content-encoding")
            return None
        request.setResponseCode(206)
        if len(ranges) == 1:
            start, end = ranges[0]
            request.setHeader(b"content-range", content_range(start, end, size))
            return [(b"", start, end - start + 1)], b"", end - start + 1
        multipart = Multipart(ranges, size, ctype.encode("latin-1"))
        request.setHeader(b"content-type", multipart.content_type)
        length = sum(len(head) + count for head, _, count in multipart.parts) + len(multipart.trailer)
        return multipart.parts, multipart.trailer, length

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}>"


class PublicFile(File):
    """A directory as a server that must never run its code serves it: plain
    files only. No processor runs (the tree has none), no dotfile is served,
    and no file whose extension marks it as a script is served either, not
    even as source (``SCRIPT_EXTENSIONS``). The front of a community host
    serves users' ``public_html`` this way (``UserDirectory(public_html=PublicFile)``).

    On such a shared origin a file of unknown type is served as
    ``application/octet-stream``, not Twisted's ``text/html``, and every answer
    says ``X-Content-Type-Options: nosniff``: a user's upload without a known
    extension must never become a page (with scripts) of everyone's origin.
    """

    indexNames = ["index.html", "index.htm"]

    def __init__(self, path: str | bytes | os.PathLike[str], defaultType: str = "application/octet-stream",
                 ignoredExts: tuple[str, ...] | list[str] = (), registry: Registry | None = None) -> None:
        super().__init__(path, defaultType, ignoredExts, registry)

    def render_GET(self, request: Request) -> Any:
        request.setHeader(b"x-content-type-options", b"nosniff")
        return super().render_GET(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path.startswith(b".") or os.path.splitext(path.decode("utf-8", "replace"))[1].lower() in SCRIPT_EXTENSIONS:
            return self.childNotFound
        return super().getChild(path, request)


def _assemble(pieces: list[tuple[bytes, int, int]], trailer: bytes, read: Callable[[int, int], bytes]) -> bytes:
    """The body ``(part header, offset, count)`` pieces and ``trailer`` describe,
    with ``read(offset, count)`` giving the file's bytes."""
    if len(pieces) == 1 and not pieces[0][0] and not trailer:
        return read(pieces[0][1], pieces[0][2])  # one plain range or the whole file: no join, no copy
    return b"".join(head + read(offset, count) for head, offset, count in pieces) + trailer


def _is_normal(path: str) -> bool:
    """``os.path.normpath`` would leave ``path`` as it is (checked much faster than it runs)."""
    return (
        path.startswith("/")
        and "//" not in path
        and "/./" not in path
        and "/../" not in path
        and not path.endswith(("/", "/.", "/.."))
    ) or path == "/"


@functools.lru_cache(maxsize=64)  # browsers send the same few values over and over
def _accepted_codings(header: bytes | None) -> frozenset[bytes]:
    """The content codings an ``Accept-Encoding`` header accepts (q > 0), lower-cased."""
    if not header:
        return frozenset()
    accepted = set()
    for item in header.split(b","):
        coding, _, params = item.partition(b";")
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            accepted.add(coding.strip().lower())
    return frozenset(accepted)
