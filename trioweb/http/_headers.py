"""A multi-valued, case-insensitive header map with Twisted's method names.

Names are stored lower-cased as bytes; values as bytes. Methods accept ``str``
or ``bytes`` names and values, and return values of the type of the name they
were asked with (as Twisted's ``Headers`` does), so ``getRawHeaders("host")``
gives ``str`` values and ``getRawHeaders(b"host")`` gives ``bytes``.

Header names and values put into a response are checked here, once: a name
must be an RFC 9110 token and a value must not contain CR, LF or NUL. A
violation raises ``ValueError`` at the call site, which is where the bug is,
instead of letting a split response reach the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar, overload

from trioweb.http._syntax import has_forbidden_characters, is_token

AnyStr = TypeVar("AnyStr", str, bytes)


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"header names and values must be str or bytes, not {type(value).__name__}")


_CONNECTION_HEADERS = (b"transfer-encoding", b"connection", b"keep-alive")
_checked_names: dict[str | bytes, bytes] = {}


def checked_name(name: str | bytes) -> bytes:
    """The lower-cased name; ValueError if it is not a token. Remembered: a
    server sets the same few names over and over."""
    checked = _checked_names.get(name)
    if checked is not None:
        return checked
    raw = _as_bytes(name)
    if not is_token(raw):
        raise ValueError(f"invalid header name {raw!r}")
    checked = raw.lower()
    if len(_checked_names) < 1024:
        _checked_names[name] = checked
    return checked


_checked_text_values: dict[str, bytes] = {}


def checked_value(value: str | bytes) -> bytes:
    """The value as bytes; ValueError if it holds CR, LF or NUL. A ``str``
    value is remembered, like names: those are the few a server sets over
    and over (content types), while bytes values vary (dates, tags)."""
    if type(value) is str:
        checked = _checked_text_values.get(value)
        if checked is not None:
            return checked
    raw = _as_bytes(value)
    if has_forbidden_characters(raw):
        raise ValueError(f"header value contains CR, LF or NUL: {raw!r}")
    if type(value) is str and len(_checked_text_values) < 1024:
        _checked_text_values[value] = raw
    return raw


def checked_map(pairs: Iterable[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """Bytes pairs from elsewhere as a header map (lower-case names).

    ValueError on a name that is not a token or a value with CR, LF or NUL.
    """
    raw: dict[bytes, list[bytes]] = {}
    for name, value in pairs:
        if not is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if has_forbidden_characters(value):
            raise ValueError(f"header value contains CR, LF or NUL: {value!r}")
        raw.setdefault(name.lower(), []).append(value)
    return raw


class Headers:
    """Header fields of a request or a response.

    ``Headers({b"name": [b"v1", b"v2"]})`` builds a map; iteration yields the
    lower-cased names as bytes.
    """

    __slots__ = ("_raw",)

    def __init__(self, rawHeaders: dict[str | bytes, list[str | bytes]] | None = None) -> None:
        self._raw: dict[bytes, list[bytes]] = {}
        if rawHeaders:
            for name, values in rawHeaders.items():
                self.setRawHeaders(name, values)

    @classmethod
    def from_trusted_map(cls, raw: dict[bytes, list[bytes]]) -> Headers:
        """Wrap a map (lower-case names) a parser already validated; no copy, no check."""
        headers = object.__new__(cls)  # (no __init__: its empty map would be replaced at once)
        headers._raw = raw
        return headers

    def add_checked(self, name: bytes, value: bytes) -> None:
        """Add a pair already validated (name lower-case): no second check."""
        self._raw.setdefault(name, []).append(value)

    def set_checked(self, name: bytes, value: bytes) -> None:
        """Make ``value`` the only value of ``name``, both already validated
        (name lower-case): for values the server formats itself."""
        self._raw[name] = [value]

    def set_value(self, name: str | bytes, value: str | bytes) -> None:
        """Make ``value`` the only value of ``name`` (both checked)."""
        self._raw[checked_name(name)] = [checked_value(value)]

    def hasHeader(self, name: str | bytes) -> bool:
        return _as_bytes(name).lower() in self._raw

    @overload
    def getRawHeaders(self, name: AnyStr) -> list[AnyStr] | None: ...
    @overload
    def getRawHeaders(self, name: AnyStr, default: object) -> list[AnyStr] | object: ...

    def getRawHeaders(self, name, default=None):  # type: ignore[no-untyped-def]
        values = self._raw.get(_as_bytes(name).lower())
        if values is None:
            return default
        if isinstance(name, str):
            return [v.decode("utf-8", "surrogateescape") for v in values]
        return list(values)

    def last_value(self, name: bytes) -> bytes | None:
        """The last value of ``name`` (lower-case bytes), or None: the fast lookup."""
        values = self._raw.get(name)
        return values[-1] if values else None

    def has_any(self, names: tuple[bytes, ...]) -> bool:
        """Whether any of ``names`` (lower-case bytes) is present, even with no
        value left: cheaper than ``last_value`` for each, when none usually is."""
        raw = self._raw
        for name in names:
            if name in raw:
                return True
        return False

    def take_framing(self) -> list[bytes] | None:
        """Remove the framing and connection headers a resource may have set
        (they are the connection's to decide); return Content-Length's values."""
        raw = self._raw
        if not raw:
            return None
        for name in _CONNECTION_HEADERS:
            if name in raw:
                del raw[name]
        return raw.pop(b"content-length", None)

    def pair_list(self) -> list[tuple[bytes, bytes]]:
        """Every ``(name, value)`` pair, one per value."""
        pairs = []
        for name, values in self._raw.items():  # (a loop: a comprehension is a call more)
            if len(values) == 1:
                pairs.append((name, values[0]))
            else:
                pairs += [(name, value) for value in values]
        return pairs

    def setRawHeaders(self, name: str | bytes, values: Iterable[str | bytes]) -> None:
        self._raw[checked_name(name)] = [checked_value(v) for v in values]

    def addRawHeader(self, name: str | bytes, value: str | bytes) -> None:
        self._raw.setdefault(checked_name(name), []).append(checked_value(value))

    def removeHeader(self, name: str | bytes) -> None:
        self._raw.pop(_as_bytes(name).lower(), None)

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Yield ``(name, values)`` pairs, names lower-cased bytes."""
        for name, values in self._raw.items():
            yield name, list(values)

    def copy(self) -> Headers:
        new = Headers()
        new._raw = {name: list(values) for name, values in self._raw.items()}
        return new

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._raw == other._raw

    def __repr__(self) -> str:
        return f"Headers({self._raw!r})"
