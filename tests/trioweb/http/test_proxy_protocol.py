"""The PROXY protocol header, in memory: lengths known byte by byte, addresses, refusals."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from trioweb.address import IPv4Address, IPv6Address, UNIXAddress
from trioweb.http._proxy_protocol import ProxyHeader, ProxyProtocolError, header_length, parse_header, read_proxy_header

V1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"


def v2(command: int, family_protocol: int, body: bytes) -> bytes:
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([command, family_protocol]) + struct.pack("!H", len(body)) + body


V2_INET = v2(0x21, 0x11, socket.inet_aton("192.0.2.1") + socket.inet_aton("198.51.100.2")
             + struct.pack("!HH", 56324, 443) + b"\x01\x00\x02h2")


@pytest.mark.parametrize("header", [V1, V2_INET, b"PROXY UNKNOWN\r\n", v2(0x20, 0x00, b"")])
def test_the_length_is_unknown_until_the_header_is_whole_then_exact(header):
    for cut in range(len(header) if header.startswith(b"PROXY") else 16):
        assert header_length(header[:cut]) is None, cut
    assert header_length(header + b"GET / HTTP/1.1\r\n") == len(header)


def test_v1_and_v2_addresses():
    expected = ProxyHeader(IPv4Address("TCP", "192.0.2.1", 56324), IPv4Address("TCP", "198.51.100.2", 443))
    assert parse_header(V1) == expected
    assert parse_header(V2_INET) == expected
    six = v2(0x21, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::1") + socket.inet_pton(socket.AF_INET6, "::1")
             + struct.pack("!HH", 1, 2))
    assert parse_header(six) == ProxyHeader(IPv6Address("TCP", "2001:db8::1", 1), IPv6Address("TCP", "::1", 2))
    unix = v2(0x21, 0x31, b"/run/a.sock".ljust(108, b"\0") + b"\0" * 108)
    assert parse_header(unix) == ProxyHeader(UNIXAddress("/run/a.sock"), UNIXAddress(None))
    assert parse_header(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n").client == IPv6Address("TCP", "2001:db8::1", 1)


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
                                    v2(0x20, 0x11, b"\0" * 12), v2(0x21, 0x12, b"\0" * 12), v2(0x21, 0x00, b"")])
def test_local_unknown_and_datagram_headers_name_no_client(header):
    assert parse_header(header) == ProxyHeader(None, None)


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"PROXX", b"\r\n\r\n\x00\r\nQUIx", b"PROXY " + b"1" * 120,
                                  b"PROXY TCP4 1.2.3.4\n"])
def test_what_cannot_be_a_header_is_refused_as_soon_as_it_shows(data):
    with pytest.raises(ProxyProtocolError):
        header_length(data)


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", b"PROXY TCP4 ::1 ::1 1 2\r\n",
    b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    v2(0x11, 0x11, b"\0" * 12), v2(0x22, 0x11, b"\0" * 12), v2(0x21, 0x11, b"\0" * 11), v2(0x21, 0x21, b"\0" * 12),
])
def test_malformed_headers_are_refused(header):
    with pytest.raises(ProxyProtocolError):
        parse_header(header)


async def test_reading_from_a_socket_leaves_what_follows_unread():
    a, b = trio.socket.socketpair()
    with a, b:
        await a.send(V1[:10])

        async def rest() -> None:
            await trio.sleep(0.05)
            await a.send(V1[10:] + b"GET / HTTP/1.1\r\n")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(rest)
            header = await read_proxy_header(b, timeout=5)
        assert header.client == IPv4Address("TCP", "192.0.2.1", 56324)
        assert await b.recv(100) == b"GET / HTTP/1.1\r\n"


async def test_a_silent_or_vanishing_peer_is_given_up():
    a, b = trio.socket.socketpair()
    with a, b:
        with pytest.raises(trio.TooSlowError):
            await read_proxy_header(b, timeout=0.1)
        await a.send(b"PROXY TCP4 1.2")
        a.close()
        with pytest.raises(trio.BrokenResourceError):
            await read_proxy_header(b, timeout=5)
