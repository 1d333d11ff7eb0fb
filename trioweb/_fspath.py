"""Mapping URL segments to files, opening them without leaving the served tree, sending them.

Two rules keep a request inside the directory a resource serves:

- ``segment_name`` accepts a path segment (already percent-decoded once by
  the Request) only if it is a plain file name: valid UTF-8, not ``.`` or
  ``..``, and free of ``/`` and NUL. Anything else is refused before a path
  is ever built from it, so a request cannot reach ``os`` functions with a
  name that climbs or that Python would reject (``embedded null byte``).
- ``ServedRoot.open`` opens a file relative to a root. It first takes an
  ``O_PATH`` handle (which neither reads the file nor triggers a FIFO's or a
  device's open side effects), asks the kernel where that handle really is
  (``/proc/self/fd``), and refuses it when it resolved outside the root --
  unless symlinks were deliberately allowed to leave it. Only regular files
  and directories are then reopened for reading, through the same handle, so
  no rename or symlink swap between the check and the open can change what
  is served.

This relies on Linux (``O_PATH`` and ``/proc/self/fd``), as the rest of the
server does (``SO_PEERCRED``).

Errors are ``OSError`` subclasses so callers can map them: ``NotServable``
(outside the root, or not a regular file or directory) and
``FileNotFoundError``/``NotADirectoryError`` mean 404; ``PermissionError``
means 403.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trioweb._request import Request

_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class NotServable(OSError):
    """The path resolves outside the served root, or is not a file or directory."""


def segment_name(segment: bytes) -> str | None:
    """The file name a decoded URL segment stands for, or None if it cannot be one."""
    if b"/" in segment or b"\0" in segment:
        return None
    try:
        name = segment.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name in (".", ".."):
        return None
    return name


def is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root if root.endswith("/") else root + "/")


class ServedRoot:
    """A directory files are served from, remembering where it really is.

    The resolved location is cached and looked up again only when a file
    seems to lie outside it, so that a root that is a symlink re-pointed by a
    deployment keeps working, at the cost of a ``realpath`` only for refused
    paths.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._real: str | None = None

    def open(self, relative: str, *, follow_symlinks: bool = False) -> tuple[int, os.stat_result]:
        """Open the regular file or directory ``relative`` (below this root) for reading.

        Returns the fd (the caller closes it) and its ``fstat``. ``relative``
        is made of names accepted by ``segment_name`` joined with ``/`` ("" for
        the root itself, which is trusted as given).
        """
        handle = os.open(os.path.join(self.path, relative) if relative else self.path, _PATH_FLAGS)
        try:
            if relative and not follow_symlinks:
                self._check_within(os.readlink(f"/proc/self/fd/{handle}"), relative)
            info = os.fstat(handle)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise NotServable(errno.ENOENT, "not a regular file or directory", relative)
            return os.open(f"/proc/self/fd/{handle}", _READ_FLAGS), info
        finally:
            os.close(handle)

    def _check_within(self, where: str, relative: str) -> None:
        if self._real is not None and is_within(where, self._real):
            return
        self._real = os.path.realpath(self.path)
        if not is_within(where, self._real):
            raise NotServable(errno.ENOENT, "outside the served directory", relative)


def open_beneath(root: str, relative: str, *, follow_symlinks: bool = False) -> tuple[int, os.stat_result]:
    """``ServedRoot(root).open(relative)``, for a one-off open."""
    return ServedRoot(root).open(relative, follow_symlinks=follow_symlinks)


def read_exactly(fd: int, offset: int, count: int) -> bytes:
    data = os.pread(fd, count, offset)
    if len(data) != count:
        raise OSError(errno.EIO, "the file changed while it was being served")
    return data


async def send_pieces(request: Request, fd: int, pieces: list[tuple[bytes, int, int]], trailer: bytes) -> None:
    """Send ``(header, offset, count)`` pieces of ``fd``, then ``trailer``, and finish.

    The caller set Content-Length, so the body goes out with ``os.sendfile``
    where the transport allows it. Closes ``fd``.
    """
    try:
        for head, offset, count in pieces:
            if head:
                request.write(head)
            await request.sendfile(fd, offset, count)
        if trailer:
            request.write(trailer)
        request.finish()
    finally:
        os.close(fd)
