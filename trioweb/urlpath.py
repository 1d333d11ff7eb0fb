"""``URLPath``: a URL you can navigate (child, sibling, parent, click), as in
Twisted; and how a request's URL is made from what the client sent.

A request's URL uses the client's ``Host`` as it gave it, port included or
not, so that a URL works from where the client is, even behind port
forwarding (Twisted takes the listening socket's port when ``Host`` has
none). Only a request with no ``Host`` at all (HTTP/1.0) gets the server's
own address.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes, urljoin, urlsplit, urlunsplit

from trioweb.address import Address, IPv4Address, IPv6Address

__all__ = ["URLPath", "origin_form", "request_hostname", "url_for"]


class URLPath:
    """An absolute URL split into parts; every navigation returns a new URLPath.

    Parts are ``bytes``, as in Twisted: ``scheme``, ``netloc``, ``path``,
    ``query``, ``fragment``.
    """

    def __init__(
        self,
        scheme: bytes = b"",
        netloc: bytes = b"localhost",
        path: bytes = b"",
        query: bytes = b"",
        fragment: bytes = b"",
    ) -> None:
        self.scheme = scheme or b"http"
        self.netloc = netloc
        self.path = path or b"/"
        self.query = query
        self.fragment = fragment

    @classmethod
    def fromBytes(cls, url: bytes) -> URLPath:
        parts = urlsplit(url)
        return cls(parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment)

    @classmethod
    def fromString(cls, url: str) -> URLPath:
        return cls.fromBytes(url.encode("ascii"))

    def pathList(self, unquote: bool = False, copy: bool = True) -> list[bytes]:
        segments = self.path.split(b"/")
        if unquote:
            segments = [unquote_to_bytes(s) for s in segments]
        return segments

    def _with_path(self, path: bytes, keepQuery: bool) -> URLPath:
        return URLPath(self.scheme, self.netloc, path, self.query if keepQuery else b"")

    def sibling(self, path: bytes, keepQuery: bool = False) -> URLPath:
        segments = self.path.split(b"/")
        segments[-1] = quote(path, safe="").encode("ascii")
        return self._with_path(b"/".join(segments), keepQuery)

    def child(self, path: bytes, keepQuery: bool = False) -> URLPath:
        segments = self.path.split(b"/")
        if segments[-1] == b"":
            segments.pop()
        segments.append(quote(path, safe="").encode("ascii"))
        return self._with_path(b"/".join(segments), keepQuery)

    def parent(self, keepQuery: bool = False) -> URLPath:
        # "/a/b/c" and "/a/b/" both have "/a/" as parent.
        segments = [*self.path.split(b"/")[:-2], b""]
        return self._with_path(b"/".join(segments) or b"/", keepQuery)

    def here(self, keepQuery: bool = False) -> URLPath:
        segments = self.path.split(b"/")
        if segments[-1] != b"":
            segments[-1] = b""
        return self._with_path(b"/".join(segments), keepQuery)

    def click(self, href: bytes) -> URLPath:
        return URLPath.fromBytes(urljoin(bytes(self), href))

    def __bytes__(self) -> bytes:
        return urlunsplit((self.scheme, self.netloc, self.path, self.query, self.fragment))

    def __str__(self) -> str:
        return bytes(self).decode("ascii")

    def __repr__(self) -> str:
        return f"URLPath({bytes(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URLPath) and bytes(self) == bytes(other)

    def __hash__(self) -> int:
        return hash(bytes(self))


def origin_form(target: bytes) -> bytes:
    """The path and query of an absolute-form target (``http://host/p?q`` → ``/p?q``)."""
    if b"://" in target:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        query = rest.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            return b"/" + (rest[query:] if query != -1 else b"")
        return rest[slash:]
    return b"/"  # authority-form (CONNECT): no path


def request_hostname(host_header: bytes | None, address: Address) -> bytes:
    """The host a client asked for, without port; ``address``'s (ours) if it named none."""
    if host_header:
        if host_header.startswith(b"["):
            return host_header[: host_header.find(b"]") + 1]
        return host_header.rsplit(b":", 1)[0] if b":" in host_header else host_header
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host.encode("ascii")
    return b"localhost"


def url_for(host_header: bytes | None, address: Address, secure: bool, segments: list[bytes]) -> bytes:
    """The absolute URL of the path ``segments`` (decoded) on the server a
    client reached at ``address`` and named with ``host_header``."""
    scheme, default = (b"https", 443) if secure else (b"http", 80)
    if host_header:
        authority = host_header.rsplit(b"]", 1)[-1]
        port = int(authority.rsplit(b":", 1)[1] or default) if b":" in authority else default
    else:
        port = address.port if isinstance(address, (IPv4Address, IPv6Address)) else default
    host = request_hostname(host_header, address)
    if port != default:
        host = b"%s:%d" % (host, port)
    path = b"/".join(quote(segment, safe="").encode("ascii") for segment in segments)
    return b"%s://%s/%s" % (scheme, host, path)

