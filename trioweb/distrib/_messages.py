"""What crosses between a front server and a personal server, and its checks.

A forwarded request is one msgpack map (``encode_request``); the response
head is another (``encode_response``). Both are plain data: bytes, ints,
lists. Each side validates what it receives before using any of it; a
malformed message is a ``MessageError``.

Request map::

    method, uri: bytes          the request line's method and target
    version: b"1.0" | b"1.1"
    headers: [[name, value]]    lower-case names; hop-by-hop headers and any
                                client-sent X-Forwarded-*/Forwarded removed
    host_header: bytes | None   the authority the client asked for
    prepath: [bytes]            where the front mounted this backend (public prefix)
    postpath: [bytes]           the rest of the path, decoded segments
    client, host: [kind, host, port] | ["UNIX", name]   kind "INET" or "INET6"
    secure: bool                the front's connection is TLS
    length: int | None          body size if known (0: no body)
    token: int                  names the request in a ``response`` message
                                (1 to 2**63 - 1, unique on its connection)

The call is ``request(message, body)``: ``body`` is a stream, or None when
the request has none. A response complete before its first flush is the
call's answer. Any other response is streamed: its head goes first to the
front's root object on that connection, as the one-way
``response(token, head, body_stream)``, and the call answers None once the
body is complete.

Response map (the answer, or the head of a streamed response)::

    status: int, reason: bytes | None, headers: [[name, value]],
    length: int | None          the body size if the backend framed it with one
    body: bytes                 in the answer of a complete response, if small
    stream: a stream            in the answer of a complete response, if not
                                (the body on it, sent right behind the answer)
"""

from __future__ import annotations

import socket
from typing import Any

import rpc
from trioweb.address import Address, IPv4Address, IPv6Address, UNIXAddress
from trioweb.http import HOP_BY_HOP, RequestHead, checked_map

# Removed before forwarding: connection-level headers of the client's hop, and
# client claims about forwarding that a backend might believe.
_NOT_FORWARDED = HOP_BY_HOP | frozenset(
    {b"expect", b"content-length",
     b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port",
     b"x-real-ip", b"forwarded"}
)


# Socket buffers between front and personal server: big enough for a whole
# stream window (1 MiB) plus its framing, so a response body crosses in a few
# large writes and reads instead of many small hand-offs between the two
# processes. The kernel caps it at net.core.wmem_max.
SOCKET_BUFFER = 4 * 1024 * 1024


def enlarge_socket_buffers(stream: Any) -> None:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass  # a smaller buffer only costs speed


# Tokens are counted up from 1 on each connection; the bound keeps them msgpack int64s.
MAX_TOKEN = 2**63 - 1


class MessageError(ValueError):
    """A message between front and personal server is malformed."""


def encode_address(address: Address) -> list[Any]:
    if isinstance(address, IPv6Address):
        return ["INET6", address.host, address.port]
    if isinstance(address, IPv4Address):
        return ["INET", address.host, address.port]
    return ["UNIX", address.name]


def decode_address(value: Any) -> Address:
    if isinstance(value, list) and len(value) == 3 and isinstance(value[1], str) and type(value[2]) is int:
        if value[0] == "INET":
            return IPv4Address("TCP", value[1], value[2])
        if value[0] == "INET6":
            return IPv6Address("TCP", value[1], value[2])
    if isinstance(value, list) and len(value) == 2 and value[0] == "UNIX" and isinstance(value[1], (str, type(None))):
        return UNIXAddress(value[1])
    raise MessageError(f"malformed address {value!r}")


def encode_request(request: Any, length: int | None, token: int) -> dict[str, Any]:
    """The forwarded form of a front ``Request`` (see the module docstring)."""
    headers = [[name, value] for name, value in request.requestHeaders.pair_list() if name not in _NOT_FORWARDED]
    return {
        "method": request.method,
        "uri": request.uri,
        "version": request.clientproto[5:],
        "headers": headers,
        "host_header": request.host_header,
        "prepath": list(request.prepath),
        "postpath": list(request.postpath),
        "client": encode_address(request.getClientAddress()),
        "host": encode_address(request.getHost()),
        "secure": request.isSecure(),
        "length": length,
        "token": token,
    }


def _bytes_list(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise MessageError(f"{what} must be a list of bytes")
    return value


def _pairs(value: Any) -> list[tuple[bytes, bytes]]:
    if not isinstance(value, list):
        raise MessageError("headers must be a list")
    pairs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], bytes) and isinstance(pair[1], bytes)):
            raise MessageError(f"header {pair!r} is not a pair of bytes")
        pairs.append((pair[0], pair[1]))
    return pairs


def decode_request(message: Any) -> tuple[RequestHead, dict[str, Any]]:
    """A ``RequestHead`` and the rest (prepath, postpath, addresses, secure, token)."""
    if not isinstance(message, dict):
        raise MessageError("a request must be a map")
    try:
        method, uri, version = message["method"], message["uri"], message["version"]
        length, host_header = message["length"], message["host_header"]
        secure, token = message["secure"], message["token"]
    except KeyError as exc:
        raise MessageError(f"request without {exc}") from None
    if not (isinstance(method, bytes) and isinstance(uri, bytes) and version in (b"1.0", b"1.1")):
        raise MessageError("malformed request line")
    if not (length is None or (type(length) is int and length >= 0)) or not isinstance(secure, bool):
        raise MessageError("malformed length or secure flag")
    if host_header is not None and not isinstance(host_header, bytes):
        raise MessageError("malformed host")
    if not (type(token) is int and 0 < token <= MAX_TOKEN):
        raise MessageError("malformed token")
    try:
        headers = checked_map(_pairs(message.get("headers")))
    except ValueError as exc:  # CR, LF or NUL in a value, or a name that is not a token
        raise MessageError(str(exc)) from None
    head = RequestHead(
        method=method,
        target=uri,
        version=version,
        headers=headers,
        keep_alive=True,
        content_length=length,
        chunked=length is None,  # a body of unknown length (the client sent it chunked)
        expect_continue=False,
        host=host_header,
    )
    extra = {
        "prepath": _bytes_list(message.get("prepath"), "prepath"),
        "postpath": _bytes_list(message.get("postpath"), "postpath"),
        "client": decode_address(message.get("client")),
        "host": decode_address(message.get("host")),
        "secure": secure,
        "token": token,
    }
    return head, extra


def encode_response(code: int, phrase: bytes | None, headers: list[tuple[bytes, bytes]],
                    length: int | None) -> dict[str, Any]:
    return {"status": code, "reason": phrase, "headers": [[n, v] for n, v in headers], "length": length}


def decode_response(message: Any) -> dict[str, Any]:
    """The response map, with its types checked (contents are checked by the caller)."""
    if not isinstance(message, dict):
        raise MessageError("a response must be a map")
    length = message.get("length")
    if not (length is None or (type(length) is int and length >= 0)):
        raise MessageError(f"malformed length {length!r}")
    body = message.get("body")
    if body is not None and not isinstance(body, bytes):
        raise MessageError("the body must be bytes")
    stream = message.get("stream")
    if stream is not None and (body is not None or not isinstance(stream, rpc.StreamReceiver)):
        raise MessageError("the body stream must be a stream, and the only body")
    return message
