"""Network addresses of the two ends of a connection, with Twisted's names.

``request.getClientAddress()`` and ``request.getHost()`` return one of these.
They are plain immutable values so they can cross process boundaries (the
distributed mode sends them to personal servers) without any behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Address", "IPv4Address", "IPv6Address", "UNIXAddress", "address_from_sockname", "tcp_address"]


@dataclass(frozen=True, slots=True)
class IPv4Address:
    type: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class IPv6Address:
    type: str
    host: str
    port: int
    flowInfo: int = 0
    scopeID: int | str = 0


@dataclass(frozen=True, slots=True)
class UNIXAddress:
    name: str | None


Address = IPv4Address | IPv6Address | UNIXAddress


def address_from_sockname(family_name: str, sockname: Any) -> Address:
    """Turn what ``socket.getsockname()``/``getpeername()`` returns into an Address.

    ``family_name`` is ``"AF_INET"``, ``"AF_INET6"`` or ``"AF_UNIX"``; the
    ``sockname`` of each is as the ``socket`` module gives it: ``(host,
    port)``, ``(host, port, flow, scope)``, or a path (str or bytes, empty
    for an unnamed socket).
    """
    if family_name == "AF_INET":
        host, port = sockname
        return IPv4Address("TCP", host, port)
    if family_name == "AF_INET6":
        host, port, flow, scope = sockname
        return IPv6Address("TCP", host, port, flow, scope)
    if isinstance(sockname, bytes):
        sockname = sockname.decode("utf-8", "surrogateescape")
    return UNIXAddress(sockname or None)


def tcp_address(host: str, port: int) -> IPv4Address | IPv6Address:
    """The address of ``host:port`` as a proxy names it: IPv6 if ``host`` has a
    colon, else IPv4 (a name, as Twisted's ``setHost`` keeps it, too)."""
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)
