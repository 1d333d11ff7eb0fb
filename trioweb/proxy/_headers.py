"""The headers a proxy sends upstream and relays back.

Both ways, hop-by-hop fields stay on their own connection: ``Connection``
and every field it names, ``Keep-Alive``, ``TE``, ``Trailer``,
``Transfer-Encoding``, ``Upgrade`` and ``Proxy-*``. The framing is each
connection's own (``Content-Length`` is sent again only where it still
holds). ``Expect`` is answered by our own connection, so it is not passed on.

Upstream, the proxy says who asked (``ForwardedHeaders``): ``X-Forwarded-For``,
``-Proto`` and ``-Host``, and ``Forwarded`` (RFC 7239). What the client sent
in those is dropped first unless the proxy is told to trust it (when it sits
behind another proxy of one's own): otherwise a client could name any
address it likes to the upstream.

Back, the upstream's ``Server`` and ``Date`` are dropped: the client gets
ours, as from any other resource (nginx does the same; Twisted relays them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trioweb._request import Request
from trioweb.address import UNIXAddress
from trioweb.http import HOP_BY_HOP

# Request fields never passed upstream as the client sent them.
_NOT_RELAYED_UP = HOP_BY_HOP | frozenset({b"host", b"content-length", b"expect"})
# The client's own claims about who it is.
_FORWARDING = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
# Response fields that are ours to decide.
_NOT_RELAYED_DOWN = HOP_BY_HOP | {b"content-length", b"server", b"date"}


@dataclass(frozen=True)
class ForwardedHeaders:
    """What the proxy tells the upstream about the client.

    ``x_forwarded``: X-Forwarded-For, -Proto and -Host. ``forwarded``: the
    standard ``Forwarded``. ``trust_incoming``: append to what the client
    sent in these instead of replacing it. ``via``: a pseudonym for ``Via``
    both ways (None: no Via).
    """

    x_forwarded: bool = True
    forwarded: bool = True
    trust_incoming: bool = False
    via: bytes | None = None
    # Worked out once from the above (upstream_headers runs for every request):
    # the client's fields never passed on, and those combined with ours.
    dropped: frozenset[bytes] = field(init=False, repr=False, compare=False)
    combined: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        combined = set()
        if self.x_forwarded:
            combined |= {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
        if self.forwarded:
            combined.add(b"forwarded")
        if self.via is not None:
            combined.add(b"via")
        dropped = _NOT_RELAYED_UP if self.trust_incoming else _NOT_RELAYED_UP | _FORWARDING
        object.__setattr__(self, "dropped", dropped)
        object.__setattr__(self, "combined", frozenset(combined))


FORWARDED_HEADERS = ForwardedHeaders()  # the default: both kinds, what the client sent replaced
NO_FORWARDED_HEADERS = ForwardedHeaders(x_forwarded=False, forwarded=False, trust_incoming=True)


def _connection_tokens(values: list[bytes] | None) -> frozenset[bytes]:
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(b","))


def upstream_headers(request: Request, host: bytes, options: ForwardedHeaders) -> list[tuple[bytes, bytes]]:
    """The request's fields as the upstream gets them, ``Host`` first.

    With ``trust_incoming``, the chains (``X-Forwarded-For``, ``Forwarded``)
    are appended to, and a scheme and host the previous proxy sent
    (``X-Forwarded-Proto``, ``-Host``) are kept: it saw the client, we saw
    only it.
    """
    received = request.requestHeaders
    connection = received.getRawHeaders(b"connection")
    dropped = options.dropped if connection is None else options.dropped | _connection_tokens(connection)
    combined = options.combined
    fields = [(b"Host", host)]
    append = fields.append
    taken: dict[bytes, list[bytes]] = {}  # the incoming values we combine with ours
    for name, values in received.getAllRawHeaders():  # names in lower case
        if name in dropped or name.startswith(b"proxy-"):
            continue  # (the hop-by-hop fields are in dropped, those Connection names included)
        if name in combined:
            taken[name] = values
        elif len(values) == 1:
            append((name, values[0]))
        else:
            fields.extend((name, value) for value in values)
    if options.x_forwarded or options.forwarded:
        client, proto, asked_host = _client_node(request), _scheme(request), request.host_header
        if options.x_forwarded:
            fields.append((b"X-Forwarded-For", b", ".join([*taken.get(b"x-forwarded-for", []), client])))
            fields.append((b"X-Forwarded-Proto", taken.get(b"x-forwarded-proto", [proto])[-1]))
            forwarded_host = taken.get(b"x-forwarded-host", [asked_host] if asked_host is not None else [])
            if forwarded_host:
                fields.append((b"X-Forwarded-Host", forwarded_host[-1]))
        if options.forwarded:
            element = b"for=" + _forwarded_node(client) + b";proto=" + proto
            if asked_host is not None:
                element += b';host="' + asked_host.replace(b"\\", b"").replace(b'"', b"") + b'"'
            fields.append((b"Forwarded", b", ".join([*taken.get(b"forwarded", []), element])))
    if options.via is not None:
        fields.append((b"Via", _via(taken.get(b"via"), request.clientproto, options.via)))
    return fields


def relayed_response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response fields (names in lower case) we pass on."""
    dropped = _NOT_RELAYED_DOWN
    connection = [value for name, value in headers if name == b"connection"]
    if connection:
        dropped = dropped | _connection_tokens(connection)
    return [(name, value) for name, value in headers if name not in dropped and not name.startswith(b"proxy-")]


def response_via(headers: list[tuple[bytes, bytes]], via: bytes) -> bytes:
    """The ``Via`` value to send back (names in lower case): the upstream's, then us."""
    return _via([v for n, v in headers if n == b"via"], b"HTTP/1.1", via)


def _via(previous: list[bytes] | None, protocol: bytes, pseudonym: bytes) -> bytes:
    hop = protocol.removeprefix(b"HTTP/") + b" " + pseudonym
    return b", ".join([*(previous or []), hop])


def _client_node(request: Request) -> bytes:
    address = request.getClientAddress()
    if isinstance(address, UNIXAddress):
        return b"unix"
    return address.host.encode("ascii")


def _forwarded_node(node: bytes) -> bytes:
    """A node of ``Forwarded`` (RFC 7239 §6): IPv6 addresses are bracketed and quoted."""
    if b":" in node:
        return b'"[' + node + b']"'
    return node


def _scheme(request: Request) -> bytes:
    return b"https" if request.isSecure() else b"http"
