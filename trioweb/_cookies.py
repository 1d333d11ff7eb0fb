"""Cookies both ways: the ``Cookie`` headers a client sends, and ``Set-Cookie`` values.

Parsing is bounded (at most ``MAX_COOKIES`` are kept, the rest ignored), and
valueless cookies are dropped, as Twisted does. A ``Set-Cookie`` value is
refused (``ValueError``) if any part of it holds ``;``, CR, LF or NUL: those
would add attributes or split the response, so the bug shows where the
cookie is made.
"""

from __future__ import annotations

MAX_COOKIES = 200

_SAME_SITE = {"lax": b"Lax", "strict": b"Strict", "none": b"None"}


def parse_cookies(header_values: list[bytes]) -> dict[bytes, bytes]:
    """``Cookie`` headers → ``{name: value}``."""
    cookies: dict[bytes, bytes] = {}
    for header in header_values:
        for item in header.split(b";"):
            name, sep, value = item.strip().partition(b"=")
            if sep and name:
                if len(cookies) >= MAX_COOKIES:
                    return cookies
                cookies[name] = value
    return cookies


def _part(value: bytes | str | int) -> bytes:
    raw = str(value).encode("utf-8") if isinstance(value, (str, int)) else value
    if any(c in raw for c in b";\r\n\x00"):
        raise ValueError(f"cookie part contains a forbidden character: {raw!r}")
    return raw


def set_cookie_value(
    name: bytes | str,
    value: bytes | str,
    *,
    expires: bytes | str | None = None,
    domain: bytes | str | None = None,
    path: bytes | str | None = None,
    max_age: bytes | str | int | None = None,
    comment: bytes | str | None = None,
    secure: bool | None = None,
    http_only: bool = False,
    same_site: str | None = None,
) -> bytes:
    """The value of a ``Set-Cookie`` header (``Request.addCookie``'s arguments)."""
    fields = [_part(name) + b"=" + _part(value)]
    for label, attribute in ((b"Expires", expires), (b"Domain", domain), (b"Path", path),
                             (b"Max-Age", max_age), (b"Comment", comment)):
        if attribute is not None:
            fields.append(label + b"=" + _part(attribute))
    if secure:
        fields.append(b"Secure")
    if http_only:
        fields.append(b"HttpOnly")
    if same_site is not None:
        same = _SAME_SITE.get(same_site.lower())
        if same is None:
            raise ValueError("sameSite must be 'lax', 'strict' or 'none'")
        if same == b"None" and not secure:
            raise ValueError("sameSite='none' requires secure=True")
        fields.append(b"SameSite=" + same)
    return b"; ".join(fields)
