"""What the resource kinds that serve a directory tree share (static files,
resource scripts, CGI): mapping URL segments to files, opening them without
leaving the served tree, sending them, and the ``Registry`` of a tree.

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

A ``Registry`` is state shared by the resources of one tree: one object per
key (the guide's Counter example), and the resources scripts chose to cache.
It lives here so that neither ``static`` nor ``script`` imports the other;
``static.Registry`` is the name Twisted code uses.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from trioweb._components import Componentized

if TYPE_CHECKING:
    from trioweb._request import Request
    from trioweb.resource import Resource

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


def open_beneath(
    root: str, relative: str, *, follow_symlinks: bool = False, real_root: str | None = None
) -> tuple[int, os.stat_result]:
    """Open the regular file or directory ``root/relative`` for reading.

    Returns the fd (the caller closes it) and its ``fstat``. ``relative`` is
    made of names accepted by ``segment_name`` joined with ``/`` ("" for the
    root itself, which is trusted as given). ``real_root`` is the root's
    resolved path, if the caller knows it.
    """
    handle = os.open(os.path.join(root, relative) if relative else root, _PATH_FLAGS)
    try:
        if relative and not follow_symlinks:
            where = os.readlink(f"/proc/self/fd/{handle}")
            if real_root is None or not is_within(where, real_root):
                if not is_within(where, os.path.realpath(root)):
                    raise NotServable(errno.ENOENT, "outside the served directory", relative)
        info = os.fstat(handle)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise NotServable(errno.ENOENT, "not a regular file or directory", relative)
        return os.open(f"/proc/self/fd/{handle}", _READ_FLAGS), info
    finally:
        os.close(handle)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_OPENAT2_NUMBERS = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437, "riscv64": 437}


def _find_openat2() -> Callable[[int, bytes], int] | None:
    """``openat2(dirfd, path)`` confined below ``dirfd`` (Linux 5.6+), or None where it is unavailable."""
    number = _OPENAT2_NUMBERS.get(platform.machine())
    if number is None or sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    how = _OpenHow(_READ_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    how_ref, how_size = ctypes.byref(how), ctypes.sizeof(how)

    def openat2(dirfd: int, path: bytes) -> int:
        fd = syscall(number, dirfd, path, how_ref, how_size)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return fd

    probe = os.open("/", _PATH_FLAGS | os.O_DIRECTORY)
    try:
        os.close(openat2(probe, b"."))
    except OSError:
        return None  # ENOSYS on old kernels, EPERM under some seccomp filters
    finally:
        os.close(probe)
    return openat2


_openat2 = _find_openat2()

# How often a ServedRoot checks that its kept handle is still what its path names.
RECHECK_ROOT = 1.0


class ServedRoot:
    """A directory files are served from, with a handle on it kept open.

    ``open`` uses ``openat2(RESOLVE_BENEATH)`` below that handle where the
    kernel has it: one system call that cannot leave the root. Whatever it
    refuses (a symlink that leaves the root, or any absolute symlink) gets a
    second look by ``open_beneath``, which allows absolute symlinks that land
    inside. The handle is checked against the path every ``recheck_every``
    seconds, so a root that is a symlink re-pointed by a deployment is
    followed within that time.
    """

    def __init__(self, path: str, recheck_every: float = RECHECK_ROOT) -> None:
        self.path = path
        self.recheck_every = recheck_every
        self._fd = -1
        self.identity: tuple[int, int] | None = None  # (device, inode) of the directory `handle` holds
        self._real: str | None = None
        self._checked = 0.0

    def open(self, relative: str, *, follow_symlinks: bool = False) -> tuple[int, os.stat_result]:
        """Like ``open_beneath(self.path, relative, ...)``."""
        if not relative or follow_symlinks or _openat2 is None:
            return open_beneath(self.path, relative, follow_symlinks=follow_symlinks)
        try:
            fd = _openat2(self.handle(), os.fsencode(relative))
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ELOOP):
                raise
            if self._real is None:
                self._real = os.path.realpath(self.path)
            return open_beneath(self.path, relative, real_root=self._real)
        try:
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                # Opening did no harm: non-blocking, and only nodes inside the root get here.
                raise NotServable(errno.ENOENT, "not a regular file or directory", relative)
        except BaseException:
            os.close(fd)
            raise
        return fd, info

    def absent(self, relative: str) -> bool:
        """Nothing at all is at ``relative``, not even a dangling symlink (one
        ``lstat``, no open): a cheap answer for names that are usually missing."""
        if not relative:
            return False
        try:
            os.stat(relative, dir_fd=self.handle(), follow_symlinks=False)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return False

    def handle(self) -> int:
        """The kept ``O_PATH`` handle on the root (re-opened if the path now names another directory)."""
        now = time.monotonic()
        if self._fd >= 0 and now - self._checked < self.recheck_every:
            return self._fd
        self._checked = now
        current = os.stat(self.path)
        identity = (current.st_dev, current.st_ino)
        if identity != self.identity:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._fd = os.open(self.path, _PATH_FLAGS | os.O_DIRECTORY)
            self.identity = (os.fstat(self._fd).st_dev, os.fstat(self._fd).st_ino)
            self._real = None
        return self._fd

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)


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


class Registry(Componentized):
    """State shared by the resources of one ``File`` tree (resource scripts use it).

    ``getComponent(key)``/``setComponent(key, value)`` keep one object per
    key (usually a class, as in ``registry.getComponent(Counter)``);
    ``cachePath``/``getCachedPath`` remember the resource a script built.
    """

    def __init__(self) -> None:
        super().__init__()
        self._path_cache: dict[str, Resource] = {}

    def cachePath(self, path: str, rsrc: Resource) -> None:
        self._path_cache[path] = rsrc

    def getCachedPath(self, path: str) -> Resource | None:
        return self._path_cache.get(path)
