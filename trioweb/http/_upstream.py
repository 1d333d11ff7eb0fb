"""What a server accepts in a response it relays from another server.

A reverse proxy's upstream and a personal server behind a front are both
untrusted as far as the client connection goes: a malformed status or field
would split the response or desynchronise the client. Both relays check the
head with these rules (``trioweb.proxy`` on a parsed HTTP response,
``trioweb.distrib`` on an rpc message) and answer 502 on a violation rather
than repair it, which would hide a broken or hostile upstream:

- the final status is an integer from 200 to 599 (1xx are interim, and a
  relay switches to no other protocol), the reason printable ASCII;
- field names are tokens, values carry no CR, LF or NUL;
- at most ``MAX_HEADERS`` fields and ``MAX_HEADER_BYTES`` in all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trioweb.http._syntax import TOKEN_CHARACTER, has_forbidden_characters, is_token

MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024

_REASON = re.compile(rb"[\t\x20-\x7e]*\Z")
# Every name a token: checked on the names joined by spaces, in one match.
_TOKENS = re.compile(rb"(?:" + TOKEN_CHARACTER + rb"+ )*" + TOKEN_CHARACTER + rb"+\Z")


class BadUpstreamResponse(Exception):
    """The response being relayed is malformed or not allowed."""


def check_status(code: object, reason: object) -> tuple[int, bytes | None]:
    if type(code) is not int or not 200 <= code <= 599:
        raise BadUpstreamResponse(f"status {code!r} is not an integer from 200 to 599")
    if reason is not None and (not isinstance(reason, bytes) or len(reason) > 256 or not _REASON.match(reason)):
        raise BadUpstreamResponse(f"invalid reason phrase {reason!r}")
    return code, reason


def check_fields(headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Raise ``BadUpstreamResponse`` unless every field may be relayed as it is."""
    if not headers:
        return
    if len(headers) > MAX_HEADERS:
        raise BadUpstreamResponse(f"more than {MAX_HEADERS} headers")
    names = [name for name, _ in headers]
    values = [value for _, value in headers]
    if sum(map(len, names)) + sum(map(len, values)) > MAX_HEADER_BYTES:
        raise BadUpstreamResponse("headers too large")
    # Joined, so that the common case (all good) costs two matches; the
    # culprit is looked for only to say which field it was.
    joined = b" ".join(names)
    if _TOKENS.match(joined) is None or joined.count(b" ") != len(names) - 1:  # a name with a space
        bad = next(name for name in names if not is_token(name))
        raise BadUpstreamResponse(f"invalid header name {bad!r}")
    if has_forbidden_characters(b" ".join(values)):
        bad = next(name for name, value in headers if has_forbidden_characters(value))
        raise BadUpstreamResponse(f"header {bad!r} has CR, LF or NUL in its value")
