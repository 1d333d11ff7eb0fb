"""The forwarded request's checks and its decoded addresses (pure logic)."""

from __future__ import annotations

import pytest

from trioweb.address import IPv4Address, IPv6Address, UNIXAddress
from trioweb.distrib import _messages
from trioweb.distrib._messages import ForwardedRequest, MessageError, decode_address, encode_address

REQUEST = {
    "method": b"GET", "uri": b"/u/hello", "version": b"1.1", "headers": [[b"host", b"example.org"]],
    "host_header": b"example.org", "prepath": [b"u"], "postpath": [b"hello"],
    "client": ["INET", "127.0.0.1", 5555], "host": ["INET6", "::1", 8080], "secure": False, "length": 0,
    "token": 17,
}


def test_a_request_round_trips_and_cannot_be_changed():
    forwarded = ForwardedRequest.from_wire(REQUEST)
    assert forwarded.client == IPv4Address("TCP", "127.0.0.1", 5555)
    assert forwarded.host == IPv6Address("TCP", "::1", 8080)
    assert forwarded.headers == ((b"host", b"example.org"),)
    with pytest.raises(AttributeError):
        forwarded.uri = b"/elsewhere"  # type: ignore[misc]


def test_an_address_decoded_again_is_the_same_one():
    first = decode_address(["INET", "10.0.0.1", 80])
    assert decode_address(["INET", "10.0.0.1", 80]) is first
    assert encode_address(first) == ["INET", "10.0.0.1", 80]
    assert decode_address(["UNIX", None]) == UNIXAddress(None)


@pytest.mark.parametrize("port", [80.0, True, "80", None])
def test_a_port_that_equals_a_kept_one_is_still_refused(port):
    decode_address(["INET", "10.0.0.2", 80])  # kept under ("INET", "10.0.0.2", 80), which 80.0 and True equal
    with pytest.raises(MessageError):
        decode_address(["INET", "10.0.0.2", port])
    with pytest.raises(MessageError):
        ForwardedRequest.from_wire({**REQUEST, "client": ["INET", "10.0.0.2", port]})


@pytest.mark.parametrize("address", [["INET", b"10.0.0.3", 80], ["TCP", "10.0.0.3", 80], ["INET", "10.0.0.3"],
                                     ("INET", "10.0.0.3", 80), ["UNIX", 5], "10.0.0.3:80"])
def test_malformed_addresses_are_refused(address):
    with pytest.raises(MessageError):
        decode_address(address)


def test_the_kept_addresses_are_bounded():
    for port in range(_messages.MAX_DECODED_ADDRESSES + 10):
        assert decode_address(["INET", "10.0.0.4", port]).port == port
    assert len(_messages._decoded_addresses) <= _messages.MAX_DECODED_ADDRESSES
