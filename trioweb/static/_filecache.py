"""Copies of small files kept in memory, checked against the disk on every use.

Serving a small file from disk takes four system calls (open, fstat, read,
close), and on a busy server they cost more than the rest of the request. A
kept copy takes one: a ``stat`` of the same path below the same root, whose
answer must show the very file the copy was made from, unchanged.

Why a matching ``stat`` is enough:

- The kernel sets a file's ctime to the current time on every change to its
  content or metadata (write, truncate, chmod, utimes, link, unlink, rename),
  and no system call lets a program set it. A copy is only made of a file
  whose ctime is at least ``SETTLED`` seconds in the past, so any later change
  gives the file a ctime different from the one kept, however coarse the
  file system's timestamps (git's rule for "racily clean" entries).
- The copy is made between two ``fstat`` calls on the open file that agree,
  so no change happened while it was read.
- A copy is only made after a confined open of that path below that root
  (``ServedRoot.open``), and is found again only by the same root and path.
  An inode that still matches (device, inode number, ctime) is the file that
  was opened then: moving it out of the root, linking or unlinking it would
  have changed its ctime. So whatever the path resolves through now, the
  bytes served are bytes the confined open allowed.

A file whose permissions change is no longer matched (chmod changes ctime);
a parent directory that becomes unsearchable makes the ``stat`` fail. Either
way the caller falls back to opening the file, which answers 403 or 404 as
usual. Not covered: a file changed through a shared ``mmap`` updates its
timestamps lazily, at the kernel's convenience.

The cache holds at most ``max_bytes`` of copies (oldest dropped first), each
at most ``max_file_bytes``.

What a copy carries besides the bytes is what follows from the identity
alone and would otherwise be worked out again on every request: the
``ETag`` and the ``Last-Modified`` text. Both depend only on the mtime and the
size, which are part of the identity, so they are exactly as fresh as the
copy. What depends on the ``File`` serving it (the content type, its
settings) is not kept here: several Files with different settings may serve
the same path.
"""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from trioweb.http import http_date

if TYPE_CHECKING:
    from trioweb._fs import ServedRoot

# How old a file's ctime must be before a copy of it is kept.
SETTLED = 1.0

Identity = tuple[int, int, int, int, int]
Key = tuple[object, str, bool]


# What must not change for a copy to stay valid, from a ``stat``'s answer (an
# attrgetter: it runs for every request for a copy, and makes no Python frame).
identity: Callable[[os.stat_result], Identity] = operator.attrgetter(
    "st_ino", "st_dev", "st_ctime_ns", "st_mtime_ns", "st_size")


class KeptFile:
    """A kept copy: the bytes, and the validators that follow from its identity."""

    __slots__ = ("content", "etag", "identity", "last_modified", "mtime", "size")

    def __init__(self, info: os.stat_result, content: bytes) -> None:
        self.identity = identity(info)
        self.content = content
        self.size = info.st_size
        self.mtime = int(info.st_mtime)  # whole seconds, as Last-Modified and If-Range dates compare
        self.etag = etag(info)
        self.last_modified = http_date(self.mtime)


def etag(info: os.stat_result) -> bytes:
    """The strong ETag of the file ``info`` describes (quoted)."""
    return b'"%x-%x"' % (info.st_mtime_ns, info.st_size)


class SmallFileCache:
    """Kept copies, keyed by ``(root identity, relative path, follow_symlinks)``."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, max_file_bytes: int = 64 * 1024, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.max_bytes = max_bytes
        self.max_file_bytes = max_file_bytes
        self.clock_ns = clock_ns  # the wall clock ctimes are compared with
        self._entries: dict[Key, KeptFile] = {}
        self._size = 0

    def get(self, key: Key, dir_fd: int, relative: str) -> KeptFile | None:
        """The kept copy, if a ``stat`` now shows that the file at ``relative``
        below ``dir_fd`` is still the one copied; else None (the caller opens it)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            info = os.stat(relative, dir_fd=dir_fd)
        except OSError:
            self._drop(key)
            return None
        if identity(info) != entry.identity:
            self._drop(key)
            return None
        return entry

    def keep(self, key: Key, fd: int, info: os.stat_result, content: bytes) -> None:
        """Keep ``content``, all of the file open at ``fd`` whose ``fstat`` was
        ``info`` before it was read, if it qualifies (see the module docstring)."""
        if len(content) != info.st_size or info.st_size > self.max_file_bytes:
            return
        if info.st_ctime_ns > self.clock_ns() - int(SETTLED * 1e9):
            return
        kept = KeptFile(info, content)
        if identity(os.fstat(fd)) != kept.identity:
            return
        self._drop(key)
        self._entries[key] = kept
        self._size += len(content)
        while self._size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= len(entry.content)


small_files = SmallFileCache()


def kept_copy(root: ServedRoot, relative: str, follow_symlinks: bool) -> KeptFile | None:
    """The copy of the small file at ``relative`` below ``root`` kept by
    ``keep_copy``, if a fresh ``stat`` shows the file unchanged."""
    if not relative:
        return None  # the root itself: not kept (it may be a file, with no directory handle)
    handle = root.handle()
    return small_files.get((root.identity, relative, follow_symlinks), handle, relative)


def keep_copy(root: ServedRoot, relative: str, follow_symlinks: bool, fd: int, info: os.stat_result,
              content: bytes) -> None:
    """Offer ``content``, the whole file ``root.open`` gave as ``fd``/``info``, for ``kept_copy``."""
    if relative:
        root.handle()  # sets the root's identity, part of the key
        small_files.keep((root.identity, relative, follow_symlinks), fd, info, content)
