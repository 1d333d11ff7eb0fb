"""Proxies: ``ReverseProxyResource`` (a part of the site served by another
server) and ``Proxy`` (a forward proxy for HTTP clients), with Twisted's names.

``ReverseProxyResource(host, port, path)`` forwards every request below it
to ``http://host:port`` + ``path`` + the rest of the request's path (each
segment quoted again) + its query, as Twisted's does; ``host`` may also be
``unix:/path/to/socket`` (an application server on a UNIX socket) and
``tls=`` an ``ssl.SSLContext`` to reach an HTTPS upstream. Unlike Twisted's,
it speaks HTTP/1.1 over kept-alive pooled connections, streams both bodies
with backpressure, removes hop-by-hop headers both ways, tells the upstream
who asked (``X-Forwarded-*``, ``Forwarded``), and answers 502 (down, bad
response) or 504 (too slow) instead of hanging. See ``_relay`` for every
failure and what the client sees, ``_pool`` for the connections, and
docs/proxy.md for the options.

``Proxy`` is a forward proxy as a resource (Twisted's is a channel): the
root of a Site whose clients are configured to use it. It forwards only
absolute-form ``http://`` requests to the hosts and ports its allowlist
names; see ``_forward``. Never run an open proxy.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from trioweb.proxy._forward import Proxy
from trioweb.proxy._headers import FORWARDED_HEADERS, NO_FORWARDED_HEADERS, ForwardedHeaders, upstream_headers
from trioweb.proxy._pool import Upstream
from trioweb.proxy._relay import Timeouts, relay
from trioweb.resource import Resource

if TYPE_CHECKING:
    from trioweb._request import Request

# What quote() never escapes (RFC 3986 unreserved).
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"

__all__ = [
    "FORWARDED_HEADERS",
    "NO_FORWARDED_HEADERS",
    "ForwardedHeaders",
    "Proxy",
    "ReverseProxyResource",
    "Timeouts",
    "Upstream",
]


class ReverseProxyResource(Resource):
    """Forwards the requests below it to an upstream server; see the module docstring.

    Options (keywords): ``tls`` (an ``ssl.SSLContext``: HTTPS to the
    upstream), ``preserve_host`` (send the client's ``Host`` instead of
    ``host[:port]``), ``forwarded`` (a ``ForwardedHeaders``;
    ``NO_FORWARDED_HEADERS`` to send none), ``via`` (a pseudonym for
    ``Via``), ``connect_timeout`` (5 s), ``read_timeout`` (60 s),
    ``max_idle`` (64 kept-alive connections), ``idle_timeout`` (30 s), or
    ``upstream`` (an ``Upstream`` to share between resources, which then
    holds the connection options).
    """

    stream_request_body = True
    # The body streams through; the upstream sets its own limit. As for
    # distrib's forwarding resource, this one bounds a single request at 1 GiB.
    max_request_body = 1024 * 1024 * 1024

    def __init__(
        self,
        host: str,
        port: int | None,
        path: bytes,
        *,
        tls: ssl.SSLContext | None = None,
        preserve_host: bool = False,
        forwarded: ForwardedHeaders = FORWARDED_HEADERS,
        via: bytes | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_idle: int = 64,
        idle_timeout: float = 30.0,
        upstream: Upstream | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(path, bytes):
            raise TypeError(f"path must be bytes, not {type(path).__name__}")
        self.host = host
        self.port = port
        self.path = path
        if upstream is None:
            if host.startswith("unix:"):
                upstream = Upstream("localhost", unix_path=host[5:], connect_timeout=connect_timeout,
                                    max_idle=max_idle, idle_timeout=idle_timeout)
            else:
                upstream = Upstream(host, port or (443 if tls else 80), tls=tls, connect_timeout=connect_timeout,
                                    max_idle=max_idle, idle_timeout=idle_timeout)
        self.upstream = upstream
        self.preserve_host = preserve_host
        self.forwarded = forwarded if via is None else _with_via(forwarded, via)
        self.timeouts = Timeouts(read=read_timeout)
        default_port = 443 if upstream.tls else 80
        if upstream.unix_path is not None:
            self.host_header = b"localhost"
        elif upstream.port == default_port:
            self.host_header = upstream.host.encode("idna")
        else:
            self.host_header = b"%s:%d" % (upstream.host.encode("idna"), upstream.port)

    def getChild(self, path: bytes, request: Request) -> ReverseProxyResource:
        """The same upstream, one segment further (quoted again, ``/`` included)."""
        child = object.__new__(type(self))
        child.__dict__.update(self.__dict__)
        child.children = {}
        base = self.path if self.path.endswith(b"/") else self.path + b"/"
        # (quote's answer for a segment of unreserved characters only, without its cost)
        child.path = base + (quote(path, safe="").encode("ascii") if path.rstrip(_UNRESERVED) else path)
        return child

    def render(self, request: Request) -> Any:
        query = request.uri.partition(b"?")[2]
        target = self.path or b"/"
        if query:
            target += b"?" + query
        host = (request.host_header or self.host_header) if self.preserve_host else self.host_header
        fields = upstream_headers(request, host, self.forwarded)
        # The request goes upstream before render returns (up to its first
        # wait); the rest runs without a cancel scope of its own. The relay
        # never uses start_soon (the body's sender has a nursery of its own).
        return request.run_until_it_waits(relay(request, self.upstream, target, fields, self.timeouts,
                                                self.forwarded.via))


def _with_via(forwarded: ForwardedHeaders, via: bytes) -> ForwardedHeaders:
    return ForwardedHeaders(forwarded.x_forwarded, forwarded.forwarded, forwarded.trust_incoming, via)
