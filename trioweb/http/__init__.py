"""One HTTP/1.1 connection: parse, frame, keep-alive, limits, timeouts.

This layer accepts connections (``Server``), turns bytes into request heads
and bodies and responses back into bytes. It knows nothing of resources:
``trioweb.server`` gives it the handler each request head goes to.

Twisted's status constants and ``RESPONSES`` are here too, as in
``twisted.web.http`` (``http.NOT_FOUND``, ``http.CACHED``).
"""

from trioweb.http import _status
from trioweb.http._channel import Channel, read_body, read_pipe
from trioweb.http._connection import (
    BodyTimeout,
    BodyTooLarge,
    ConnectionLost,
    Handler,
    HTTPConnection,
)
from trioweb.http._headers import Headers, checked_map, checked_value
from trioweb.http._limits import KiB, Limits, MiB
from trioweb.http._parser import END_OF_MESSAGE, ParseError, RequestHead, RequestParser
from trioweb.http._proxy_protocol import ProxyProtocolError, ProxyProtocolListener
from trioweb.http._ratelimit import RateLimitedLog
from trioweb.http._server import Server, accept_forever, socket_listener_of
from trioweb.http._status import *  # noqa: F403  (Twisted's status names, listed in its __all__)
from trioweb.http._syntax import (
    HOP_BY_HOP,
    TOKEN_CHARACTER,
    has_forbidden_characters,
    http_date,
    is_token,
    parse_http_date,
    status_has_no_body,
)
from trioweb.http._transport import Transport, transport_for
from trioweb.http._upstream import MAX_HEADER_BYTES, MAX_HEADERS, BadUpstreamResponse, check_fields, check_status
from trioweb.http._writer import status_phrase

__all__ = [
    "END_OF_MESSAGE",
    "HOP_BY_HOP",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "TOKEN_CHARACTER",
    "BadUpstreamResponse",
    "BodyTimeout",
    "BodyTooLarge",
    "Channel",
    "ConnectionLost",
    "HTTPConnection",
    "Handler",
    "Headers",
    "KiB",
    "Limits",
    "MiB",
    "ParseError",
    "ProxyProtocolError",
    "ProxyProtocolListener",
    "RateLimitedLog",
    "RequestHead",
    "RequestParser",
    "Server",
    "Transport",
    "accept_forever",
    "check_fields",
    "check_status",
    "checked_map",
    "checked_value",
    "has_forbidden_characters",
    "http_date",
    "is_token",
    "parse_http_date",
    "read_body",
    "read_pipe",
    "socket_listener_of",
    "status_has_no_body",
    "status_phrase",
    "transport_for",
]
__all__ += _status.__all__
