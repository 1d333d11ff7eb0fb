"""What the front accepts from a personal server's response (it is untrusted input).

A personal server runs code its user wrote; the front must not let it split a
response, desynchronise the client connection, or reach beyond its own part
of the origin. So:

- the status is an integer from 200 to 599, the reason printable ASCII;
- header names are tokens and values carry no CR, LF or NUL; at most
  ``MAX_HEADERS`` fields and ``MAX_HEADER_BYTES`` in all;
- framing and hop-by-hop headers are dropped (the front frames the response
  itself), and so are headers that act on the whole origin (HSTS, Alt-Svc,
  Clear-Site-Data, Service-Worker-Allowed, reporting endpoints, client hints,
  and the X-Sendfile family that would make the front read files);
- ``Set-Cookie`` is confined to the user's own path: its ``Domain`` is
  removed, its ``Path`` forced under the user's prefix, and ``__Host-``
  cookies and the front's own cookie names are refused. Where two prefixes
  reach the same site (``/~alice/`` and ``/users/alice/``), ``cookie_copies``
  makes the copy for the other one, so a cookie works under both.

A violation raises ``BadBackendResponse``; the front answers 502 and drops
the connection to that backend. Sanitising instead would hide a broken or
hostile backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from trioweb.http import HOP_BY_HOP, BadUpstreamResponse, check_fields, check_status, is_token

# check_status is the http layer's, named here with the front's other checks.
__all__ = ["DROPPED", "BadBackendResponse", "check_headers", "check_status", "confine_cookie", "cookie_copies"]

DROPPED = HOP_BY_HOP | frozenset(
    {
        # framing and the front's own: the front decides these
        b"content-length", b"date", b"server",
        # origin-wide effects one user must not have on the others
        b"strict-transport-security", b"alt-svc", b"clear-site-data", b"service-worker-allowed",
        b"nel", b"report-to", b"reporting-endpoints", b"accept-ch", b"critical-ch",
        b"x-sendfile", b"x-accel-redirect", b"x-lighttpd-send-file",
    }
)

# The personal server's response is malformed or not allowed (the rules of
# trioweb.http's relayed responses, plus those below).
BadBackendResponse = BadUpstreamResponse


def check_headers(
    headers: Sequence[tuple[bytes, bytes]], cookie_path: bytes, reserved_cookies: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The headers to relay, lower-case names; raises BadBackendResponse.

    ``headers`` are pairs of bytes (``ForwardedResponse.from_wire`` made
    sure of that). ``cookie_path`` is the user's public prefix
    (``b"/~alice/"``): every cookie is confined below it.
    """
    check_fields(headers)
    relayed: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        name = name.lower()
        if name in DROPPED:
            continue
        if name == b"set-cookie":
            value = confine_cookie(value, cookie_path, reserved_cookies)
        relayed.append((name, value))
    return relayed


def confine_cookie(value: bytes, cookie_path: bytes, reserved: frozenset[bytes] = frozenset()) -> bytes:
    """``Set-Cookie`` value with no Domain and a Path under ``cookie_path``."""
    parts = [p.strip() for p in value.split(b";")]
    name = parts[0].split(b"=", 1)[0].strip()
    if not name or not is_token(name):
        raise BadBackendResponse(f"invalid cookie name in {value!r}")
    if name.startswith(b"__Host-") or name in reserved:
        raise BadBackendResponse(f"cookie {name!r} is not the personal server's to set")
    kept = [parts[0]]
    path = cookie_path
    for attribute in parts[1:]:
        key, _, attr_value = attribute.partition(b"=")
        key = key.strip().lower()
        if key == b"domain":
            continue
        if key == b"path":
            requested = attr_value.strip()
            if requested.startswith(cookie_path) and b".." not in requested:
                path = requested
            continue
        kept.append(attribute)
    kept.insert(1, b"Path=" + path)
    return b"; ".join(kept)


def cookie_copies(confined: bytes, cookie_path: bytes, other_prefixes: Iterable[bytes]) -> list[bytes]:
    """``confined`` (a ``confine_cookie`` result under ``cookie_path``) again
    under each of ``other_prefixes``, with the same path below the prefix."""
    # The Path confine_cookie put right after the name=value pair, which has no ";".
    pair, _, below = confined.partition(b"; Path=" + cookie_path)
    return [pair + b"; Path=" + prefix + below for prefix in other_prefixes]
