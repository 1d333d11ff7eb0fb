"""Files a personal server passes to the front open, for the front to send itself.

A file body of a forwarded response (what ``File`` sends with ``sendfile``)
need not cross the rpc connection byte by byte: the personal server passes
the open file (``rpc.FileDescriptor``, SCM_RIGHTS over the UNIX socket) with
the answer, and the front sends the range with ``os.sendfile`` as it sends
its own static files. The front reads only what the personal server opened,
with the rights of that open; it never gets a path.

The front does not trust the file, and checks it before a byte of the
response goes out (``unsendable``): a regular file, the range inside it, and
a filesystem on local storage. The last matters because the front sends on
its event loop, as for its own files: a read from a file on a FUSE or
network filesystem that a user controls could stall, and with it every
user's requests. Files elsewhere are streamed by the personal server, as
before. The personal server asks the same question before it passes a file,
so a front's refusal means a personal server that does not play by the rules
(the front answers 502).

Filesystem types come from ``/proc/self/mountinfo`` by device number, read
again when a device is not in it (at most once a second); a device not found
(a btrfs subvolume that is not a mount point, say) is not local as far as
this module knows.
"""

from __future__ import annotations

import os
import stat
import time

# Filesystems on local storage (or memory): reads end without any user's
# process taking part.
LOCAL_FILESYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs", "zfs", "tmpfs", "ramfs",
    "overlay",
})
MOUNTINFO = "/proc/self/mountinfo"
REREAD_INTERVAL = 1.0  # seconds between readings of the mount table caused by unknown devices
# Smallest body worth passing as a file: below it the bytes cost less than a
# descriptor's trip (the ``File`` resource keeps small files in memory anyway).
PASS_FROM = 64 * 1024


def parse_mountinfo(text: str) -> dict[int, str]:
    """Device number -> filesystem type, from the text of a mountinfo file."""
    types: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            separator = fields.index("-", 6)
            types[os.makedev(int(major), int(minor))] = fields[separator + 1]
        except (IndexError, ValueError):
            continue  # not a line we understand: its device stays unknown
    return types


class FilesystemTypes:
    """The filesystem type of each mounted device, from a mountinfo file."""

    def __init__(self, path: str = MOUNTINFO) -> None:
        self.path = path
        self._types: dict[int, str] = {}
        self._read_at = -REREAD_INTERVAL

    def of(self, device: int) -> str | None:
        kind = self._types.get(device)
        if kind is None and time.monotonic() - self._read_at >= REREAD_INTERVAL:
            self._read_at = time.monotonic()
            try:
                with open(self.path, encoding="utf-8", errors="replace") as mountinfo:
                    self._types = parse_mountinfo(mountinfo.read())
            except OSError:
                self._types = {}
            kind = self._types.get(device)
        return kind


filesystem_types = FilesystemTypes()


def unsendable(fd: int, offset: int, count: int) -> str | None:
    """Why the front must not send ``count`` bytes of ``fd`` from ``offset``; None if it may."""
    try:
        status = os.fstat(fd)
    except OSError as exc:
        return f"the file cannot be examined: {exc.strerror}"
    if not stat.S_ISREG(status.st_mode):
        return "the file is not a regular file"
    if offset < 0 or count < 0 or offset + count > status.st_size:
        return f"bytes {offset} to {offset + count} are not in a file of {status.st_size} bytes"
    kind = filesystem_types.of(status.st_dev)
    if kind not in LOCAL_FILESYSTEMS:
        return f"the file is on a filesystem the front does not read from ({kind or 'unknown'})"
    return None
