"""One HTTP/1.1 connection: parse, frame, keep-alive, limits, timeouts.

This layer turns bytes into request heads and bodies and responses back into
bytes. It knows nothing of resources; ``trioweb.server`` drives it.
"""

from trioweb.http._channel import Channel, read_pipe
from trioweb.http._connection import (
    BodyTimeout,
    BodyTooLarge,
    ConnectionLost,
    HTTPConnection,
)
from trioweb.http._headers import Headers, checked_map
from trioweb.http._limits import KiB, Limits, MiB
from trioweb.http._parser import END_OF_MESSAGE, ParseError, RequestHead, RequestParser
from trioweb.http._writer import status_phrase

__all__ = [
    "END_OF_MESSAGE",
    "BodyTimeout",
    "BodyTooLarge",
    "Channel",
    "ConnectionLost",
    "HTTPConnection",
    "Headers",
    "KiB",
    "Limits",
    "MiB",
    "ParseError",
    "RequestHead",
    "RequestParser",
    "checked_map",
    "read_pipe",
    "status_phrase",
]
