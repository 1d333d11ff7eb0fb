"""Behind a proxy: the client, scheme and host a trusted proxy says the request had.

``TrustedProxies("127.0.0.1, 10.0.0.0/8, unix")`` names the peers whose
headers are believed (addresses, CIDR networks, ``unix`` for UNIX-socket
peers, ``*`` for any). ``apply(request)`` does nothing for any other peer:
its ``Forwarded`` and ``X-Forwarded-*`` are only more headers.

From a trusted peer it reads ``Forwarded`` (RFC 7239) if present, else
``X-Forwarded-For``, ``-Proto``, ``-Host`` and ``-Port``:

- the client is found by walking the ``for`` list from the right (the
  nearest hop) and skipping the proxies we trust: the first address we do not
  trust is the client. What a client wrote itself is to the left of the
  addresses our proxies appended, so it cannot pose as another client.
  If every hop is trusted (``*``), the farthest is the client. Obfuscated
  or ``unknown`` identifiers end the walk without a client;
- the scheme (``proto``: ``http`` or ``https``), host and port come from the
  nearest hop (the header's last element or value).

It sets ``request.client`` (``getClientAddress``, the access log, what the
front forwards to personal servers) and, through ``setHost``, ``isSecure``,
``getHost``, ``getRequestHostname``, ``prePathURL`` and so every redirect.
Malformed values are ignored one by one; nothing raises.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from trioweb.address import IPv4Address, IPv6Address, UNIXAddress, tcp_address

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A host as an authority may name it: a registered name or an IPv4 address, or an IPv6 literal in brackets.
_HOST = re.compile(rb"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?\Z")
_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')


class TrustedProxies:
    """The peers whose forwarding headers are believed; see the module docstring."""

    def __init__(self, spec: str = "127.0.0.1,::1,unix") -> None:
        self.any = False
        self.unix = False
        self.networks: list[_Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.any = True
            elif item.lower() == "unix":
                self.unix = True
            else:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is neither an address, a network (CIDR), 'unix' nor '*'") from None

    def trusts_ip(self, text: str) -> bool:
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def trusts(self, peer: object) -> bool:
        if isinstance(peer, UNIXAddress):
            return self.unix or self.any
        if isinstance(peer, (IPv4Address, IPv6Address)):
            return self.trusts_ip(peer.host)
        return False

    def apply(self, request: Request) -> None:
        """Believe ``request``'s forwarding headers if its peer is trusted (see the module docstring)."""
        if not self.trusts(request.client):
            return
        headers = request.requestHeaders
        forwarded = headers.getRawHeaders(b"forwarded")
        if forwarded:
            elements = _parse_forwarded(b",".join(forwarded))
            hops = [element.get("for", "") for element in elements]
            nearest = elements[-1] if elements else {}
            proto, host, port = nearest.get("proto"), nearest.get("host"), None
        else:
            hops = [hop.strip() for value in headers.getRawHeaders(b"x-forwarded-for") or []
                    for hop in value.decode("latin-1").split(",")]
            proto = _last(headers.getRawHeaders(b"x-forwarded-proto"))
            host = _last(headers.getRawHeaders(b"x-forwarded-host"))
            port = _last(headers.getRawHeaders(b"x-forwarded-port"))
        client = self._client(hops)
        if client is not None:
            request.client = client
        self._set_host(request, proto, host, port)

    def _client(self, hops: list[str]) -> IPv4Address | IPv6Address | None:
        farthest = None
        for hop in reversed(hops):
            ip, port = _split_node(hop)
            if ip is None:
                return None  # obfuscated, unknown or malformed: no client to name
            farthest = tcp_address(ip, port)
            if not self.trusts_ip(ip):
                return farthest
        return farthest  # every hop is trusted (or '*'): the farthest one is all we know

    @staticmethod
    def _set_host(request: Request, proto: str | None, host: str | None, port: str | None) -> None:
        proto = proto.lower() if proto else None
        if proto not in (None, "http", "https"):
            proto = None
        if proto is None and host is None and port is None:
            return
        authority = (host or "").encode("latin-1", "replace") or request.host_header
        secure = proto == "https" if proto is not None else request.isSecure()
        match = _HOST.match(authority) if authority else None
        if match is not None and match.group(1) and int(match.group(1)) > 65535:
            match = None
        if authority is None or match is None:
            if proto is None:
                return
            # The scheme alone: keep the host the client named.
            name, number = request.getRequestHostname(), None
        else:
            name = authority[: match.start(1) - 1] if match.group(1) else authority
            number = int(match.group(1)) if match.group(1) else None
        if port is not None and port.isdigit() and int(port) <= 65535:
            number = int(port)
        request.setHost(name, number if number is not None else (443 if secure else 80), secure)


def _last(values: list[bytes] | None) -> str | None:
    if not values:
        return None
    return values[-1].decode("latin-1").split(",")[-1].strip() or None


def _parse_forwarded(value: bytes) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` value, each a map of its lowercased
    parameters (quotes and backslash escapes removed); malformed pairs are dropped."""
    text = value.decode("latin-1")
    elements: list[dict[str, str]] = []
    for element in _split_outside_quotes(text, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            match = _PAIR.fullmatch(pair)
            if match is None:
                continue
            raw = match.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            pairs.setdefault(match.group(1).lower(), raw)
        elements.append(pairs)
    return elements


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _split_node(node: str) -> tuple[str | None, int]:
    """(IP, port) of a ``for`` node or an X-Forwarded-For entry: ``192.0.2.1``,
    ``192.0.2.1:4711``, ``[2001:db8::1]:4711``, ``2001:db8::1``; (None, 0) otherwise."""
    node = node.strip()
    port = 0
    if node.startswith("["):
        end = node.find("]")
        if end == -1:
            return None, 0
        host, rest = node[1:end], node[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return None, 0
    elif node.count(":") == 1:
        host, _, port_text = node.partition(":")
        if not port_text.isdigit():
            return None, 0
        port = int(port_text)
    else:
        host = node
    try:
        return str(ipaddress.ip_address(host)), port if port <= 65535 else 0
    except ValueError:
        return None, 0
