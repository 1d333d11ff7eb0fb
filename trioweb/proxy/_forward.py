"""``Proxy``: a forward proxy, as the root resource of a Site.

Clients configured to use the proxy send absolute-form requests
(``GET http://example.com/page HTTP/1.1``); the proxy forwards each to the
host it names and relays the answer (``_relay``: streaming, hop-by-hop
headers, 502/504). A proxy that forwards anything to anywhere is an open
proxy, a tool for attacks on third parties and on the hosts behind it
(SSRF), so:

- it is off unless a Site is built on a ``Proxy``: an ordinary Site routes
  an absolute-form request by its path and never forwards it;
- only ``http://`` targets, on the hosts of ``allowed_hosts`` (names as the
  client writes them, case-insensitive; no wildcard) and the ports of
  ``allowed_ports`` (80); anything else is 403;
- a request whose target is the proxy itself (its own listening address, or
  one that already passed through it, by its ``Via`` pseudonym) is a loop:
  508;
- ``CONNECT`` (tunnels, for https) is off: 405, unless ``connect_ports``
  names the ports it may reach (443, usually); the host must be on
  ``allowed_hosts`` as well, and the loop check applies. A tunnel relays raw
  bytes (``_tunnel``) and ends after ``tunnel_idle_timeout`` without
  traffic. Any other request that is not absolute-form ``http://`` is 400.

Connections are kept alive per upstream host, at most ``max_hosts`` pools
at a time (the least recently used is closed to make room).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from trioweb.address import UNIXAddress
from trioweb.proxy._headers import FORWARDED_HEADERS, ForwardedHeaders, upstream_headers
from trioweb.proxy._pool import Upstream
from trioweb.proxy._relay import Timeouts, relay
from trioweb.proxy._tunnel import can_take_over, parse_authority, tunnel
from trioweb.resource import Resource, render_error

if TYPE_CHECKING:
    from trioweb._request import Request

ALLOWED_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")


class Proxy(Resource):
    """A forward proxy for ``http://`` URLs on an allowlist; see the module docstring."""

    isLeaf = True
    stream_request_body = True
    max_request_body = 1024 * 1024 * 1024  # as ReverseProxyResource's

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        allowed_ports: Iterable[int] = (80,),
        *,
        forwarded: ForwardedHeaders = FORWARDED_HEADERS,
        via: bytes | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_hosts: int = 64,
        max_idle: int = 8,
        connect_ports: Iterable[int] = (),
        tunnel_idle_timeout: float = 300.0,
    ) -> None:
        super().__init__()
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.allowed_ports = frozenset(allowed_ports)
        # Every forward proxy says it is one (RFC 9110 §7.6.3); the random
        # part tells this one's requests from another trioweb's.
        pseudonym = via or b"trioweb-" + secrets.token_hex(4).encode("ascii")
        self.forwarded = ForwardedHeaders(forwarded.x_forwarded, forwarded.forwarded, forwarded.trust_incoming,
                                          pseudonym)
        self.timeouts = Timeouts(read=read_timeout)
        self.connect_timeout = connect_timeout
        self.max_hosts = max_hosts
        self.max_idle = max_idle
        self.connect_ports = frozenset(connect_ports)
        self.tunnel_idle_timeout = tunnel_idle_timeout
        self.allowed_methods = ALLOWED_METHODS + ((b"CONNECT",) if self.connect_ports else ())
        self._upstreams: OrderedDict[tuple[str, int], Upstream] = OrderedDict()

    def render(self, request: Request) -> Any:
        if request.method not in self.allowed_methods:
            request.setHeader(b"allow", b", ".join(self.allowed_methods))
            return render_error(request, 405, "Method Not Allowed",
                                "This proxy does not take that method (tunnels, CONNECT, are off).")
        if request.method == b"CONNECT":
            return self._connect(request)
        try:
            parts = urlsplit(request.uri)
            host, port = parts.hostname, parts.port or 80
        except ValueError:  # a port that is not a number
            host = None
        if not host or parts.scheme.lower() != b"http":
            return render_error(request, 400, "Bad Request",
                                "This is a proxy: it forwards absolute http:// URLs only.")
        name = host.decode("ascii", "replace").lower()
        if name not in self.allowed_hosts or port not in self.allowed_ports:
            return render_error(request, 403, "Forbidden", "This proxy does not forward to that address.")
        return self._forward(request, name, port, parts.path or b"/", parts.query)

    def _connect(self, request: Request) -> Any:
        address = parse_authority(request.uri)
        if address is None or request.has_body:
            return render_error(request, 400, "Bad Request", "CONNECT takes host:port and no body.")
        host, port = address
        if host not in self.allowed_hosts or port not in self.connect_ports:
            return render_error(request, 403, "Forbidden", "This proxy does not make tunnels to that address.")
        if not can_take_over(request):
            return render_error(request, 501, "Not Implemented", "Tunnels need a direct client connection.")
        return self._open_tunnel(request, host, port)

    async def _open_tunnel(self, request: Request, host: str, port: int) -> bytes | None:
        if await self._is_own_address(request, host, port):
            return render_error(request, 508, "Loop Detected", "That address is this proxy itself.")
        upstream = Upstream(host, port, connect_timeout=self.connect_timeout, max_idle=0)
        return await tunnel(request, upstream, self.tunnel_idle_timeout)

    async def _forward(self, request: Request, host: str, port: int, path: bytes, query: bytes) -> bytes | None:
        via = self.forwarded.via
        assert via is not None
        seen = request.requestHeaders.getRawHeaders(b"via") or []
        if any(via in value for value in seen) or await self._is_own_address(request, host, port):
            return render_error(request, 508, "Loop Detected", "That address is this proxy itself.")
        authority = host.encode("idna") if port == 80 else b"%s:%d" % (host.encode("idna"), port)
        fields = upstream_headers(request, authority, self.forwarded)
        target = path + b"?" + query if query else path
        return await relay(request, self._upstream(host, port), target, fields, self.timeouts, via)

    def _upstream(self, host: str, port: int) -> Upstream:
        key = (host, port)
        upstream = self._upstreams.get(key)
        if upstream is None:
            if len(self._upstreams) >= self.max_hosts:
                self._upstreams.popitem(last=False)[1].close_idle()
            upstream = self._upstreams[key] = Upstream(host, port, connect_timeout=self.connect_timeout,
                                                       max_idle=self.max_idle)
        else:
            self._upstreams.move_to_end(key)
        return upstream

    @staticmethod
    async def _is_own_address(request: Request, host: str, port: int) -> bool:
        """``host:port`` reaches the address this request came in on."""
        own = request.getHost()
        if isinstance(own, UNIXAddress) or port != own.port:
            return False
        try:
            found = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
        except OSError:
            return False  # the connection fails and says so (502)
        own_ip = ipaddress.ip_address(own.host.split("%")[0])
        for *_, sockaddr in found:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if ip == own_ip or (own_ip.is_unspecified and (ip.is_loopback or ip.is_unspecified)):
                return True
        return False
