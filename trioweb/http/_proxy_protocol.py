"""The PROXY protocol (HAProxy's, versions 1 and 2): who the client really is.

Theory of operation. A load balancer that passes TCP through (HAProxy,
nginx's stream module, AWS NLB) starts every connection with one header
naming the client and the address it connected to; a listener with
``proxy=1`` requires it, before TLS and before HTTP. Two wire forms:

- v1, text: ``PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\\r\\n`` (at most
  107 bytes; ``PROXY UNKNOWN ...`` for a connection it cannot describe);
- v2, binary: a 12-byte signature, version/command, family/protocol, a
  2-byte length, then the addresses and optional TLVs (ignored). Command
  LOCAL (a health check of the balancer itself) names no client.

The sans-I/O part is ``header_length(data)`` (how long the header at the
start of ``data`` is: None while more bytes are needed, ``ProxyProtocolError``
as soon as it cannot be one) and ``parse_header(data)`` (its addresses).
``read_proxy_header`` does the I/O on the accepted socket: it peeks, and
reads only bytes known to belong to the header, so the TLS handshake or the
HTTP request behind it is left unread on the socket. A
missing or malformed header closes the connection (the specification says
to, and it means the port is reachable without the balancer).
``ProxyProtocolListener`` marks a listener whose connections carry one.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any

import trio

from trioweb.address import Address, IPv4Address, IPv6Address, UNIXAddress

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107
_V2_FIXED = 16


class ProxyProtocolError(ValueError):
    """The bytes at the start of a connection are not a valid PROXY header."""


@dataclass(frozen=True)
class ProxyHeader:
    """The addresses a PROXY header gives; both None when it names no client (LOCAL, UNKNOWN)."""

    client: Address | None
    host: Address | None


def header_length(data: bytes) -> int | None:
    """The length of the PROXY header ``data`` starts with; None if more bytes are needed."""
    if data[:1] == b"P":
        if b"PROXY "[: len(data)] != data[:6]:
            raise ProxyProtocolError("not a PROXY header")
        end = data.find(b"\r\n", 0, V1_MAX)
        if end == -1:
            if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
                raise ProxyProtocolError("PROXY v1 header too long or without CRLF")
            return None
        return end + 2
    if V2_SIGNATURE[: len(data)] != data[: len(V2_SIGNATURE)]:
        raise ProxyProtocolError("no PROXY header")
    if len(data) < _V2_FIXED:
        return None
    length: int = struct.unpack_from("!H", data, 14)[0]
    return _V2_FIXED + length


def _ip(text: bytes, family: type[IPv4Address] | type[IPv6Address], port: bytes) -> Address:
    try:
        host = ipaddress.ip_address(text.decode("ascii"))
        number = int(port)
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"bad address {text!r} {port!r} in a PROXY v1 header") from None
    if (host.version == 4) != (family is IPv4Address) or not 0 <= number <= 65535 or not port.isdigit():
        raise ProxyProtocolError(f"bad address {text!r} {port!r} in a PROXY v1 header")
    return family("TCP", str(host), number)


def _parse_v1(line: bytes) -> ProxyHeader:
    fields = line[:-2].split(b" ")
    if len(fields) >= 2 and fields[1] == b"UNKNOWN":
        return ProxyHeader(None, None)
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 header {line!r}")
    family = IPv4Address if fields[1] == b"TCP4" else IPv6Address
    return ProxyHeader(_ip(fields[2], family, fields[4]), _ip(fields[3], family, fields[5]))


def _parse_v2(data: bytes) -> ProxyHeader:
    version_command, family_protocol = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header of version {version_command >> 4}")
    command = version_command & 0x0F
    if command == 0:  # LOCAL: the balancer's own connection
        return ProxyHeader(None, None)
    if command != 1:
        raise ProxyProtocolError(f"PROXY v2 header with unknown command {command}")
    body = data[_V2_FIXED:]
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if protocol not in (1, 0) or family == 0:  # STREAM (or UNSPEC): anything else is not for us
        return ProxyHeader(None, None)
    if family == 1 and len(body) >= 12:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        return ProxyHeader(IPv4Address("TCP", socket.inet_ntop(socket.AF_INET, src), sport),
                           IPv4Address("TCP", socket.inet_ntop(socket.AF_INET, dst), dport))
    if family == 2 and len(body) >= 36:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        return ProxyHeader(IPv6Address("TCP", socket.inet_ntop(socket.AF_INET6, src), sport),
                           IPv6Address("TCP", socket.inet_ntop(socket.AF_INET6, dst), dport))
    if family == 3 and len(body) >= 216:
        src, dst = (part.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") or None
                    for part in struct.unpack_from("!108s108s", body))
        return ProxyHeader(UNIXAddress(src), UNIXAddress(dst))
    raise ProxyProtocolError(f"PROXY v2 header too short for its address family {family}")


def parse_header(data: bytes) -> ProxyHeader:
    """The addresses in the complete header ``data`` (exactly ``header_length`` bytes)."""
    if data.startswith(b"PROXY "):
        return _parse_v1(data)
    return _parse_v2(data)


async def read_proxy_header(sock: trio.socket.SocketType, timeout: float) -> ProxyHeader:
    """Read the PROXY header at the start of ``sock``'s stream, and nothing after it.

    ``ProxyProtocolError`` if it is malformed, ``trio.TooSlowError`` if it is
    not whole within ``timeout``, ``trio.BrokenResourceError`` if the peer
    closed first.
    """
    data = b""
    with trio.fail_after(timeout):
        while True:
            # Peek, so that nothing past the header is taken; what is seen
            # while the header is still incomplete is all header: take it,
            # and the next peek waits for more (or sees the end).
            peeked = await sock.recv(512, socket.MSG_PEEK)
            if not peeked:
                raise trio.BrokenResourceError("the peer closed before the end of its PROXY header")
            length = header_length(data + peeked)
            wanted = len(peeked) if length is None else length - len(data)
            while wanted > 0:
                chunk = await sock.recv(wanted)
                if not chunk:
                    raise trio.BrokenResourceError("the peer closed inside its PROXY header")
                data += chunk
                wanted -= len(chunk)
            if length is not None:
                break
    return parse_header(data)


async def proxied_addresses(stream: trio.abc.Stream, client: Address, host: Address,
                            timeout: float) -> tuple[Address, Address]:
    """(client, host) of an accepted ``stream`` whose PROXY header is still
    unread (under TLS: not handshaken yet); the socket's own addresses when
    the header names none."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(transport, trio.SocketStream):
        raise OSError("a PROXY protocol listener gave a stream that is not a socket")
    header = await read_proxy_header(transport.socket, timeout)
    return header.client or client, header.host or host


class ProxyProtocolListener(trio.abc.Listener[Any]):
    """A listener whose connections each start with a PROXY header (the server reads it)."""

    def __init__(self, listener: trio.abc.Listener[Any]) -> None:
        self.listener = listener

    async def accept(self) -> Any:
        return await self.listener.accept()

    async def aclose(self) -> None:
        await self.listener.aclose()


def is_proxied(listener: trio.abc.Listener[Any]) -> bool:
    """Whether ``listener``'s connections carry a PROXY header (under TLS too)."""
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    return isinstance(listener, ProxyProtocolListener)
