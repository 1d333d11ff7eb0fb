"""What crosses between a front server and a personal server, and its checks.

A forwarded request is one msgpack map (``ForwardedRequest``); the response
head is another (``ForwardedResponse``). Both are plain data on the wire:
bytes, ints, lists (``to_wire``). Each side validates what it receives
before using any of it (``from_wire``); a malformed message is a
``MessageError``.

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
    file: [file, offset, count] in the answer of a complete response whose body
                                is ``count`` bytes of an open file from
                                ``offset``: the file itself (an
                                ``rpc.FileDescriptor``; see ``_passed_file``)
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, NamedTuple

import rpc
from trioweb.address import Address, IPv4Address, IPv6Address, UNIXAddress
from trioweb.http import HOP_BY_HOP, RequestHead, checked_map

if TYPE_CHECKING:
    from trioweb._request import Request

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


# Decoded addresses, by (kind, host, port): they are immutable, and making one
# (a frozen dataclass) costs more than finding it; a personal server sees the
# same few (its front's, and each client connection's for its requests).
_decoded_addresses: dict[tuple[str, str, int], Address] = {}
MAX_DECODED_ADDRESSES = 1024


def decode_address(value: Any) -> Address:
    if isinstance(value, list) and len(value) == 3 and isinstance(value[1], str) and type(value[2]) is int:
        kind, host, port = value
        if kind == "INET" or kind == "INET6":  # checked before the look-up: the key's types are exact
            key = (kind, host, port)
            address = _decoded_addresses.get(key)
            if address is None:
                if len(_decoded_addresses) >= MAX_DECODED_ADDRESSES:
                    _decoded_addresses.clear()
                address = IPv4Address("TCP", host, port) if kind == "INET" else IPv6Address("TCP", host, port)
                _decoded_addresses[key] = address
            return address
    if isinstance(value, list) and len(value) == 2 and value[0] == "UNIX" and isinstance(value[1], (str, type(None))):
        return UNIXAddress(value[1])
    raise MessageError(f"malformed address {value!r}")


def _bytes_list(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise MessageError(f"{what} must be a list of bytes")
    return value


def _pairs(value: Any) -> tuple[tuple[bytes, bytes], ...]:
    """Header pairs, as they cross: a list of two-item lists of bytes."""
    if not isinstance(value, list):
        raise MessageError("headers must be a list")
    pairs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2
                and isinstance(pair[0], bytes) and isinstance(pair[1], bytes)):
            raise MessageError(f"header {pair!r} is not a pair of bytes")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _length(value: Any) -> int | None:
    if not (value is None or (type(value) is int and value >= 0)):
        raise MessageError(f"malformed length {value!r}")
    return value


# The two messages are named tuples: immutable, as frozen dataclasses would be,
# and made several times faster (a frozen dataclass sets each field through
# object.__setattr__); one of each is made per request on each side.
class ForwardedRequest(NamedTuple):
    """A request as the front forwards it (the request map of the module docstring)."""

    method: bytes
    uri: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    host_header: bytes | None
    prepath: list[bytes]
    postpath: list[bytes]
    client: Address
    host: Address
    secure: bool
    length: int | None
    token: int

    @staticmethod
    def wire_of(request: Request, length: int | None, token: int) -> dict[str, Any]:
        """The request map the front sends for ``request`` (made directly: no
        instance first, one request at a time on the front's hot path).
        Pairs go as tuples, which msgpack writes as arrays."""
        return {
            "method": request.method,
            "uri": request.uri,
            "version": request.clientproto[5:],
            "headers": [pair for pair in request.requestHeaders.pair_list() if pair[0] not in _NOT_FORWARDED],
            "host_header": request.host_header,
            "prepath": request.prepath,
            "postpath": request.postpath,
            "client": encode_address(request.getClientAddress()),
            "host": encode_address(request.getHost()),
            "secure": request.isSecure(),
            "length": length,
            "token": token,
        }

    @classmethod
    def from_wire(cls, message: Any) -> ForwardedRequest:
        """The request a front sent, every field checked; ``MessageError`` if malformed."""
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
        if not isinstance(secure, bool):
            raise MessageError("malformed secure flag")
        if host_header is not None and not isinstance(host_header, bytes):
            raise MessageError("malformed host")
        if not (type(token) is int and 0 < token <= MAX_TOKEN):
            raise MessageError("malformed token")
        return cls(
            method=method,
            uri=uri,
            version=version,
            headers=_pairs(message.get("headers")),
            host_header=host_header,
            prepath=_bytes_list(message.get("prepath"), "prepath"),
            postpath=_bytes_list(message.get("postpath"), "postpath"),
            client=decode_address(message.get("client")),
            host=decode_address(message.get("host")),
            secure=secure,
            length=_length(length),
            token=token,
        )

    def head(self) -> RequestHead:
        """The request head a personal server's Site works on; ``MessageError``
        if a header name is not a token or a value holds CR, LF or NUL."""
        try:
            headers = checked_map(self.headers)
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        return RequestHead(
            method=self.method,
            target=self.uri,
            version=self.version,
            headers=headers,
            keep_alive=True,
            content_length=self.length,
            chunked=self.length is None,  # a body of unknown length (the client sent it chunked)
            expect_continue=False,
            host=self.host_header,
        )


class ForwardedResponse(NamedTuple):
    """A personal server's response head (the response map of the module
    docstring), with the body of a complete response: ``body`` if small,
    else ``stream``. ``status``, ``reason`` and the headers' names and values
    are checked by the front (``_response_checks``), not here."""

    status: int
    reason: bytes | None
    headers: tuple[tuple[bytes, bytes], ...]
    length: int | None
    body: bytes | None = None
    stream: Any = None  # a StreamSender where it is made, a StreamReceiver where it arrives
    file: tuple[rpc.FileDescriptor, int, int] | None = None  # (the open file, offset, count)

    def to_wire(self) -> dict[str, Any]:
        # The pairs go as they are: msgpack writes tuples as arrays.
        message: dict[str, Any] = {"status": self.status, "reason": self.reason, "headers": self.headers,
                                   "length": self.length}
        if self.body is not None:
            message["body"] = self.body
        if self.stream is not None:
            message["stream"] = self.stream
        if self.file is not None:
            message["file"] = self.file
        return message

    @classmethod
    def from_wire(cls, message: Any) -> ForwardedResponse:
        """The response a personal server sent, its types checked; ``MessageError`` if malformed."""
        if not isinstance(message, dict):
            raise MessageError("a response must be a map")
        status, reason = message.get("status"), message.get("reason")
        if type(status) is not int:
            raise MessageError(f"status {status!r} is not an integer")
        if reason is not None and not isinstance(reason, bytes):
            raise MessageError(f"reason {reason!r} is not bytes")
        body = message.get("body")
        if body is not None and not isinstance(body, bytes):
            raise MessageError("the body must be bytes")
        stream = message.get("stream")
        if stream is not None and (body is not None or not isinstance(stream, rpc.StreamReceiver)):
            raise MessageError("the body stream must be a stream, and the only body")
        file = message.get("file")
        if file is not None:
            if body is not None or stream is not None:
                raise MessageError("a passed file must be the only body")
            if not (type(file) is list and len(file) == 3 and type(file[0]) is rpc.FileDescriptor
                    and type(file[1]) is int and type(file[2]) is int):
                raise MessageError("a passed file must be [file, offset, count]")
            file = (file[0], file[1], file[2])
        return cls(status, reason, _pairs(message.get("headers")), _length(message.get("length")), body, stream,
                   file)
