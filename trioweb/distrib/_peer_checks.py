"""Who is on the other end of a personal server's socket.

The front connects, as www-data, to a socket path inside a user's home: a
place the user controls. Before forwarding anything it checks (in a worker
thread, since homes may live on slow network file systems):

- the home directory is a directory, not a symlink, owned by the user (or
  root) and not writable by group or others (else another account could
  swap the socket);
- the socket path is itself a socket (``lstat``: a symlink is refused, never
  followed), owned by the user.

Those checks give clear errors but race with the user. The authoritative
check comes after ``connect()`` and before any byte is sent: the process on
the other end must run as the user (``SO_PEERCRED``). A symlink to another
user's socket, or to a root-owned service socket, fails there.
"""

from __future__ import annotations

import os
import stat
from typing import Protocol


class PasswdEntry(Protocol):
    pw_name: str
    pw_uid: int
    pw_gid: int
    pw_gecos: str
    pw_dir: str


class Refused(Exception):
    """The socket or its peer is not the user's; the message says why (for the log)."""


def check_socket_path(path: str, user: PasswdEntry) -> None:
    """Raise Refused unless ``path`` is the user's own socket in a safe home."""
    try:
        home = os.lstat(user.pw_dir)
    except OSError as exc:
        raise Refused(f"home {user.pw_dir}: {exc.strerror}") from None
    if not stat.S_ISDIR(home.st_mode):
        raise Refused(f"home {user.pw_dir} is not a directory (or is a symlink)")
    if home.st_uid not in (user.pw_uid, 0):
        raise Refused(f"home {user.pw_dir} is owned by uid {home.st_uid}, not {user.pw_name}")
    if home.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused(f"home {user.pw_dir} is writable by group or others")
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise Refused(f"{path} is not a socket" + (" (a symlink)" if stat.S_ISLNK(info.st_mode) else ""))
    if info.st_uid != user.pw_uid:
        raise Refused(f"{path} is owned by uid {info.st_uid}, not {user.pw_name}")


def check_peer_uid(peer_uid: int, user: PasswdEntry, path: str) -> None:
    if peer_uid != user.pw_uid:
        raise Refused(f"the process behind {path} runs as uid {peer_uid}, not {user.pw_name}")


def publishes_socket(path: str, user: PasswdEntry) -> bool:
    """For the user index: the socket checks pass (no connection is made)."""
    try:
        check_socket_path(path, user)
    except Refused:
        return False
    return True
