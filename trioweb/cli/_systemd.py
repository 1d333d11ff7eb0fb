"""systemd: readiness notifications (``sd_notify``) and the watchdog, without a dependency.

``notify`` sends ``READY=1``, ``RELOADING=1``, ``STOPPING=1``... as one
datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace) and does nothing when systemd did not set it. ``watchdog`` sends
``WATCHDOG=1`` at half the interval systemd asks for in ``$WATCHDOG_USEC``.
Socket activation (``LISTEN_FDS``) is the ``systemd:`` endpoint's, in
``trioweb.endpoints``.
"""

from __future__ import annotations

import logging
import os
import socket

import trio

log = logging.getLogger("trioweb")


def notify(*fields: str) -> bool:
    """Tell systemd ``fields`` (``"READY=1"``...); False if there is no one to tell."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between two ``WATCHDOG=1``, if systemd's watchdog is on for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


async def watchdog() -> None:
    """Keep systemd's watchdog fed while the event loop runs (forever, if it is on)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)
