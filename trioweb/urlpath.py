"""``URLPath``: a URL you can navigate (child, sibling, parent, click), as in Twisted."""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes, urljoin, urlsplit, urlunsplit

__all__ = ["URLPath"]


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
